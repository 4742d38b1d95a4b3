//! [`Ec2Api`] over the AWS SDK: EC2 for everything but the public AMI parameters, which come
//! from SSM.
//!
//! Retries (throttling such as `RequestLimitExceeded`, 5xx, timeouts) are the SDK's standard
//! retry strategy with exponential backoff; what still fails afterwards is classified into an
//! [`Ec2Error`] that keeps the service's error code.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types as sdk;
use nodewright_scheduling::catalog::InstanceTypeInfo;
use nodewright_scheduling::instance_type::CapacityType;

use super::ec2::{
    Ec2Api, Ec2Result, Filter, FleetOutput, FleetRequest, Image, ImageQuery, Instance,
    InstanceQuery, LaunchTemplate, NewLaunchTemplate, SecurityGroup, SpotPrice, Subnet,
    TypeOffering,
};
use super::errors::{Ec2Error, Ec2ErrorKind, classify};
use super::sdk_shapes;
use crate::cloudprovider::BoxFuture;

/// How the SDK clients are configured. The defaults read everything from the environment
/// (region, credentials chain including IRSA, and `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone)]
pub struct SdkSettings {
    pub region: Option<String>,
    /// Overrides the endpoint (tests point it at moto); `AWS_ENDPOINT_URL` does the same.
    pub endpoint_url: Option<String>,
    /// Static credentials instead of the default chain (tests).
    pub static_credentials: Option<(String, String)>,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Upper bound on one attempt.
    pub attempt_timeout: Duration,
}

impl Default for SdkSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            static_credentials: None,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Loads the shared SDK configuration.
pub async fn load_config(settings: &SdkSettings) -> aws_config::SdkConfig {
    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_attempts.max(1))
        .with_initial_backoff(settings.initial_backoff)
        .with_max_backoff(settings.max_backoff);
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(settings.attempt_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            key.clone(),
            secret.clone(),
            None,
            None,
            "nodewright-static",
        ));
    }
    loader.load().await
}

/// EC2 and SSM through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkEc2 {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
}

impl SdkEc2 {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }

    /// The EC2 client, for callers that need a call this interface does not offer.
    pub fn ec2_client(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }
}

/// Classifies an SDK failure. A 5xx answer is retryable whatever its code says.
pub(crate) fn sdk_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Ec2Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let code = err.code().map(str::to_string);
            let message = err
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            let kind = if status >= 500 {
                Ec2ErrorKind::Retryable
            } else {
                code.as_deref().map_or(Ec2ErrorKind::Permanent, classify)
            };
            Ec2Error {
                kind,
                operation,
                code,
                message,
            }
        }
        SdkError::ConstructionFailure(_) => {
            Ec2Error::permanent(operation, DisplayErrorContext(&err).to_string())
        }
        _ => Ec2Error::transport(operation, DisplayErrorContext(&err).to_string()),
    }
}

fn sdk_filters(filters: Vec<Filter>) -> Option<Vec<sdk::Filter>> {
    Some(
        filters
            .into_iter()
            .map(|f| {
                sdk::Filter::builder()
                    .name(f.name)
                    .set_values(Some(f.values))
                    .build()
            })
            .collect(),
    )
}

impl Ec2Api for SdkEc2 {
    fn describe_subnets(&self, filters: Vec<Filter>) -> BoxFuture<'_, Ec2Result<Vec<Subnet>>> {
        Box::pin(async move {
            let subnets: Vec<sdk::Subnet> = self
                .ec2
                .describe_subnets()
                .set_filters(sdk_filters(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeSubnets", e))?;
            Ok(subnets.iter().filter_map(sdk_shapes::subnet).collect())
        })
    }

    fn describe_security_groups(
        &self,
        filters: Vec<Filter>,
    ) -> BoxFuture<'_, Ec2Result<Vec<SecurityGroup>>> {
        Box::pin(async move {
            let groups: Vec<sdk::SecurityGroup> = self
                .ec2
                .describe_security_groups()
                .set_filters(sdk_filters(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeSecurityGroups", e))?;
            Ok(groups
                .iter()
                .filter_map(sdk_shapes::security_group)
                .collect())
        })
    }

    fn describe_images(&self, query: ImageQuery) -> BoxFuture<'_, Ec2Result<Vec<Image>>> {
        Box::pin(async move {
            let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let images: Vec<sdk::Image> = self
                .ec2
                .describe_images()
                .set_image_ids(non_empty(query.image_ids))
                .set_owners(non_empty(query.owners))
                .set_filters(sdk_filters(query.filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeImages", e))?;
            Ok(images.iter().filter_map(sdk_shapes::image).collect())
        })
    }

    fn get_parameter(&self, name: String) -> BoxFuture<'_, Ec2Result<String>> {
        Box::pin(async move {
            let output = self
                .ssm
                .get_parameter()
                .name(&name)
                .send()
                .await
                .map_err(|e| sdk_error("GetParameter", e))?;
            output
                .parameter()
                .and_then(|p| p.value())
                .map(str::to_string)
                .ok_or_else(|| {
                    Ec2Error::service(
                        "GetParameter",
                        "ParameterNotFound",
                        format!("{name} has no value"),
                    )
                })
        })
    }

    fn describe_launch_templates(
        &self,
        filters: Vec<Filter>,
    ) -> BoxFuture<'_, Ec2Result<Vec<LaunchTemplate>>> {
        Box::pin(async move {
            let templates: Vec<sdk::LaunchTemplate> = self
                .ec2
                .describe_launch_templates()
                .set_filters(sdk_filters(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeLaunchTemplates", e))?;
            Ok(templates
                .iter()
                .filter_map(sdk_shapes::launch_template)
                .collect())
        })
    }

    fn create_launch_template(
        &self,
        template: NewLaunchTemplate,
    ) -> BoxFuture<'_, Ec2Result<LaunchTemplate>> {
        Box::pin(async move {
            let output = self
                .ec2
                .create_launch_template()
                .launch_template_name(&template.name)
                .launch_template_data(sdk_shapes::launch_template_data(&template.data))
                .tag_specifications(sdk_shapes::tag_specification(
                    sdk::ResourceType::LaunchTemplate,
                    &template.tags,
                ))
                .send()
                .await
                .map_err(|e| sdk_error("CreateLaunchTemplate", e))?;
            output
                .launch_template()
                .and_then(sdk_shapes::launch_template)
                .ok_or_else(|| {
                    Ec2Error::transport(
                        "CreateLaunchTemplate",
                        "the response named no launch template",
                    )
                })
        })
    }

    fn delete_launch_template(&self, name: String) -> BoxFuture<'_, Ec2Result<()>> {
        Box::pin(async move {
            self.ec2
                .delete_launch_template()
                .launch_template_name(name)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteLaunchTemplate", e))?;
            Ok(())
        })
    }

    fn create_fleet(&self, request: FleetRequest) -> BoxFuture<'_, Ec2Result<FleetOutput>> {
        Box::pin(async move {
            let mut call = self
                .ec2
                .create_fleet()
                .r#type(sdk::FleetType::Instant)
                .client_token(&request.client_token)
                .target_capacity_specification(
                    sdk::TargetCapacitySpecificationRequest::builder()
                        .total_target_capacity(1)
                        .default_target_capacity_type(match request.capacity_type {
                            CapacityType::Spot => sdk::DefaultTargetCapacityType::Spot,
                            CapacityType::OnDemand => sdk::DefaultTargetCapacityType::OnDemand,
                        })
                        .build(),
                )
                .set_launch_template_configs(Some(
                    request
                        .configs
                        .iter()
                        .map(sdk_shapes::fleet_config)
                        .collect(),
                ))
                .set_tag_specifications(Some(
                    [
                        sdk::ResourceType::Instance,
                        sdk::ResourceType::Volume,
                        sdk::ResourceType::Fleet,
                    ]
                    .into_iter()
                    .map(|kind| sdk_shapes::tag_specification(kind, &request.tags))
                    .collect(),
                ))
                .set_context(request.context.clone());
            call = match request.capacity_type {
                CapacityType::Spot => call.spot_options(
                    sdk::SpotOptionsRequest::builder()
                        .allocation_strategy(sdk::SpotAllocationStrategy::PriceCapacityOptimized)
                        .build(),
                ),
                CapacityType::OnDemand => call.on_demand_options(
                    sdk::OnDemandOptionsRequest::builder()
                        .allocation_strategy(sdk::FleetOnDemandAllocationStrategy::LowestPrice)
                        .build(),
                ),
            };
            let output = call.send().await.map_err(|e| sdk_error("CreateFleet", e))?;
            Ok(FleetOutput {
                instances: output
                    .instances()
                    .iter()
                    .filter_map(sdk_shapes::fleet_instance)
                    .collect(),
                errors: output
                    .errors()
                    .iter()
                    .map(sdk_shapes::fleet_error)
                    .collect(),
            })
        })
    }

    fn describe_instances(&self, query: InstanceQuery) -> BoxFuture<'_, Ec2Result<Vec<Instance>>> {
        Box::pin(async move {
            let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let reservations: Vec<sdk::Reservation> = self
                .ec2
                .describe_instances()
                .set_instance_ids(non_empty(query.instance_ids))
                .set_filters(sdk_filters(query.filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeInstances", e))?;
            Ok(reservations
                .iter()
                .flat_map(|r| r.instances())
                .filter_map(sdk_shapes::instance)
                .collect())
        })
    }

    fn terminate_instances(&self, instance_ids: Vec<String>) -> BoxFuture<'_, Ec2Result<()>> {
        Box::pin(async move {
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(instance_ids))
                .send()
                .await
                .map_err(|e| sdk_error("TerminateInstances", e))?;
            Ok(())
        })
    }

    fn describe_instance_types(&self) -> BoxFuture<'_, Ec2Result<Vec<InstanceTypeInfo>>> {
        Box::pin(async move {
            let types: Vec<sdk::InstanceTypeInfo> = self
                .ec2
                .describe_instance_types()
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeInstanceTypes", e))?;
            Ok(types
                .iter()
                .filter_map(sdk_shapes::instance_type_info)
                .collect())
        })
    }

    fn describe_instance_type_offerings(&self) -> BoxFuture<'_, Ec2Result<Vec<TypeOffering>>> {
        Box::pin(async move {
            let offerings: Vec<sdk::InstanceTypeOffering> = self
                .ec2
                .describe_instance_type_offerings()
                .location_type(sdk::LocationType::AvailabilityZone)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeInstanceTypeOfferings", e))?;
            Ok(offerings
                .iter()
                .filter_map(|o| {
                    Some(TypeOffering {
                        instance_type: o.instance_type()?.as_str().to_string(),
                        zone: o.location()?.to_string(),
                    })
                })
                .collect())
        })
    }

    fn describe_spot_price_history(
        &self,
        start_time: SystemTime,
    ) -> BoxFuture<'_, Ec2Result<Vec<SpotPrice>>> {
        Box::pin(async move {
            let prices: Vec<sdk::SpotPrice> = self
                .ec2
                .describe_spot_price_history()
                .start_time(DateTime::from(start_time))
                .product_descriptions("Linux/UNIX")
                .product_descriptions("Linux/UNIX (Amazon VPC)")
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_error("DescribeSpotPriceHistory", e))?;
            Ok(prices.iter().filter_map(sdk_shapes::spot_price).collect())
        })
    }
}
