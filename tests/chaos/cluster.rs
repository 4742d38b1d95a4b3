//! The trial's processes: the simulated cluster (`nodewright simulate --no-controller --cloud aws`)
//! and `nodewright controller` replicas, each writing its log to the trial's directory. Replicas
//! reach the API server through the fault proxy and EC2 through the EC2 fault proxy; the sim's
//! kubelets and the checks read moto and the API server directly.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::apiproxy::ApiProxy;
use crate::rng::Rng;
use crate::support::proxy::FaultProxy;
use crate::support::{Env, REGION, moto};

/// The binary under test; `NODEWRIGHT_BIN` points a long run at a copy that a rebuild cannot
/// replace mid-run.
fn binary() -> PathBuf {
    std::env::var_os("NODEWRIGHT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nodewright")))
}

/// A port nothing listens on, for a child process to bind. Taken below Linux's ephemeral range
/// (32768 and up, where the proxies' and clients' `bind(0)` land) and never handed out twice
/// by this process, so the port cannot be taken between the check and the child's bind.
fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const LAST: u16 = 32_000;
    // Processes started together begin apart.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        FIRST + (std::process::id() % 1_000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in FIRST..LAST {
        let mut port = NEXT.fetch_add(1, Ordering::SeqCst);
        if port >= LAST {
            port = FIRST + port % (LAST - FIRST);
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

struct Replica {
    name: String,
    child: Option<Child>,
    starts: u32,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub env: Env,
    pub ec2_faults: FaultProxy,
    pub api: ApiProxy,
    /// Straight to the simulated API server, for the workload and the checks.
    pub client: kube::Client,
    sim: Child,
    replicas: Vec<Replica>,
}

impl Cluster {
    /// Starts the simulated cluster and `replicas` controllers.
    pub async fn start(dir: &Path, replicas: usize, rng: &mut Rng) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let env = Env::new("chaos").await;
        let scenario = dir.join("scenario.yaml");
        std::fs::write(&scenario, "steps: []\n").map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let sim = Command::new(binary())
            .arg("simulate")
            .arg(&scenario)
            .args(["--cloud", "aws", "--no-controller", "--speed", "1"])
            .args(["--boot-delay", "3s", "--serve", &address.to_string()])
            .env("AWS_ENDPOINT_URL", moto::endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("CLUSTER_NAME", &env.cluster)
            .stdin(Stdio::null())
            .stdout(log_file(dir, "simulate")?)
            .stderr(log_file(dir, "simulate.err")?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary().display()))?;
        let mut config = kube::Config::new(
            format!("http://{address}")
                .parse()
                .map_err(|e| format!("{e}"))?,
        );
        config.default_namespace = "default".to_string();
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let api = ApiProxy::start(address, rng.fork())
            .await
            .map_err(|e| e.to_string())?;
        let ec2_faults = FaultProxy::start(moto::endpoint());
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            env,
            ec2_faults,
            api,
            client,
            sim,
            replicas: Vec::new(),
        };
        cluster.until_served().await?;
        std::fs::write(dir.join("kubeconfig"), kubeconfig(&cluster.api.url()))
            .map_err(|e| e.to_string())?;
        for index in 0..replicas {
            cluster.replicas.push(Replica {
                name: format!("replica-{index}"),
                child: None,
                starts: 0,
            });
            cluster.start_replica(index)?;
        }
        Ok(cluster)
    }

    async fn until_served(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if self.client.apiserver_version().await.is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.sim.try_wait() {
                return Err(format!(
                    "the simulator exited ({status}); see {}",
                    self.dir.display()
                ));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("the simulated API server did not answer in 60 s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn start_replica(&mut self, index: usize) -> Result<(), String> {
        let dir = self.dir.clone();
        let cluster = self.env.cluster.clone();
        let ec2 = self.ec2_faults.endpoint();
        let replica = &mut self.replicas[index];
        replica.starts += 1;
        let log = format!("{}.{}", replica.name, replica.starts);
        let child = Command::new(binary())
            .arg("controller")
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("CLUSTER_NAME", cluster)
            .env("AWS_REGION", REGION)
            .env("AWS_ENDPOINT_URL", ec2)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env(
                "METRICS_PORT",
                free_port().map_err(|e| e.to_string())?.to_string(),
            )
            .env(
                "HEALTH_PROBE_PORT",
                free_port().map_err(|e| e.to_string())?.to_string(),
            )
            .env("SYSTEM_NAMESPACE", "default")
            .env("KUBERNETES_VERSION", "1.27")
            .env("POD_NAME", &replica.name)
            .env("LOG_LEVEL", "info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file(&dir, &log)?)
            .stderr(log_file(&dir, &format!("{log}.err"))?)
            .spawn()
            .map_err(|e| format!("cannot start the controller: {e}"))?;
        replica.child = Some(child);
        Ok(())
    }

    /// The replica holding the Lease, by index.
    pub async fn leader(&self) -> Option<usize> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "default");
        let lease = leases
            .get_opt(nodewright::leader::DEFAULT_LEASE_NAME)
            .await
            .ok()??;
        let holder = lease.spec?.holder_identity?;
        let name = holder.split('_').next()?;
        self.replicas.iter().position(|r| r.name == name)
    }

    /// SIGKILL: no shutdown, no Lease release.
    pub fn kill(&mut self, index: usize) -> bool {
        match self.replicas.get_mut(index).and_then(|r| r.child.take()) {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    /// Starts every replica that is down; how many were.
    pub fn restart_dead(&mut self) -> Result<usize, String> {
        let dead: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| {
                let replica = &mut self.replicas[i];
                match replica.child.as_mut() {
                    None => true,
                    Some(child) => child.try_wait().ok().flatten().is_some(),
                }
            })
            .collect();
        for &index in &dead {
            self.start_replica(index)?;
        }
        Ok(dead.len())
    }

    /// Replicas that exited by themselves (not killed by the harness).
    pub fn crashed(&mut self) -> Vec<String> {
        self.replicas
            .iter_mut()
            .filter_map(|r| {
                let status = r.child.as_mut()?.try_wait().ok()??;
                Some(format!("{} exited: {status}", r.name))
            })
            .collect()
    }

    /// Lines that report a panic, in any process's log.
    pub fn panics(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            found.extend(
                text.lines()
                    .filter(|line| line.contains("panicked"))
                    .map(|line| format!("{}: {line}", path.display())),
            );
        }
        found
    }

    pub fn stop(&mut self) {
        for index in 0..self.replicas.len() {
            self.kill(index);
        }
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_file(dir: &Path, name: &str) -> Result<File, String> {
    let path = dir.join(format!("{name}.log"));
    File::create(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {server}\nusers:\n- name: sim\n  user: {{}}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\n"
    )
}
