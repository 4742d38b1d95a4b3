//! Syntax checks that the API server does with OpenAPI patterns ([`crate::apis::schema`]) and
//! nodewright repeats in Rust: qualified names, label values, quantities, percentages, durations.
//!
//! Each check returns why its input is malformed, or `None` when it is well formed.

const NAME_MAX_LENGTH: usize = 63;
const PREFIX_MAX_LENGTH: usize = 253;

fn is_alphanumeric(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A name part of a qualified name, or a non-empty label value.
fn name_problem(name: &str, what: &str) -> Option<String> {
    if name.len() > NAME_MAX_LENGTH {
        return Some(format!(
            "{what} must be no more than {NAME_MAX_LENGTH} characters"
        ));
    }
    let starts_and_ends_alphanumeric = name.chars().next().is_some_and(is_alphanumeric)
        && name.chars().last().is_some_and(is_alphanumeric);
    let allowed = name
        .chars()
        .all(|c| is_alphanumeric(c) || matches!(c, '-' | '_' | '.'));
    if !starts_and_ends_alphanumeric || !allowed {
        return Some(format!(
            "{what} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    None
}

/// A DNS-1123 subdomain: lowercase labels of alphanumerics and '-', joined by '.'.
fn dns_subdomain_problem(prefix: &str) -> Option<String> {
    if prefix.len() > PREFIX_MAX_LENGTH {
        return Some(format!(
            "prefix must be no more than {PREFIX_MAX_LENGTH} characters"
        ));
    }
    let label_ok = |label: &str| {
        let lower_alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        label.chars().next().is_some_and(lower_alphanumeric)
            && label.chars().last().is_some_and(lower_alphanumeric)
            && label.chars().all(|c| lower_alphanumeric(c) || c == '-')
    };
    if prefix.split('.').all(label_ok) {
        None
    } else {
        Some("prefix must be a lowercase DNS subdomain (e.g. example.com)".to_owned())
    }
}

/// A qualified name: `[prefix/]name`, as label, annotation and taint keys are.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("must not be empty".to_owned());
    }
    match key.split_once('/') {
        None => name_problem(key, "name"),
        Some((_, name)) if name.contains('/') => Some("must contain at most one '/'".to_owned()),
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Some("prefix before '/' must not be empty".to_owned());
            }
            dns_subdomain_problem(prefix).or_else(|| name_problem(name, "name"))
        }
    }
}

/// A label value: empty, or a name of at most 63 characters.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        name_problem(value, "label value")
    }
}

/// Splits `text` into a leading run of ASCII digits and the rest.
fn digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Parses `digits[.digits]` (either side may be empty but not both), returning the number and the
/// rest of the text.
fn decimal(text: &str) -> Option<(f64, &str)> {
    let (whole, rest) = digits(text);
    let (fraction, rest) = match rest.strip_prefix('.') {
        Some(after) => digits(after),
        None => ("", rest),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let number = format!(
        "{}.{}",
        if whole.is_empty() { "0" } else { whole },
        fraction
    );
    number.parse().ok().map(|value| (value, rest))
}

/// The value of a Kubernetes resource quantity (`500m` → 0.5, `1Gi` → 2^30), or `None` when the
/// text is not a quantity. Precision beyond `f64` does not matter for range checks.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let (sign, rest) = match text.chars().next() {
        Some('-') => (-1.0, &text[1..]),
        Some('+') => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    let (number, suffix) = decimal(rest)?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent => {
            let exponent = exponent.strip_prefix(['e', 'E'])?;
            let (exponent_sign, exponent) = match exponent.chars().next() {
                Some('-') => (-1.0, &exponent[1..]),
                Some('+') => (1.0, &exponent[1..]),
                _ => (1.0, exponent),
            };
            match decimal(exponent)? {
                (power, "") => 10f64.powf(exponent_sign * power),
                _ => return None,
            }
        }
    };
    if number == 0.0 {
        // Zero whatever the exponent: 0 × 10^309 would otherwise be 0 × ∞, NaN.
        return Some(0.0);
    }
    Some(sign * number * multiplier)
}

/// An eviction threshold: a percentage from 0% to 100% or a non-negative quantity.
pub fn eviction_threshold_problem(value: &str) -> Option<String> {
    const REASON: &str = "must be a percentage from 0% to 100% or a non-negative quantity";
    let well_formed = match value.strip_suffix('%') {
        Some(percentage) => {
            let (whole, rest) = digits(percentage);
            let fraction = match rest.strip_prefix('.') {
                Some(fraction) => {
                    (!fraction.is_empty() && digits(fraction).1.is_empty()).then_some(fraction)
                }
                None => rest.is_empty().then_some(""),
            };
            match fraction {
                None => false,
                Some(fraction) if whole == "100" => fraction.chars().all(|c| c == '0'),
                Some(_) => (1..=2).contains(&whole.len()),
            }
        }
        None => !value.starts_with('-') && parse_quantity(value).is_some(),
    };
    (!well_formed).then(|| REASON.to_owned())
}

/// A Go duration as the kubelet reads it: one or more `<number><unit>` with units ns, us, µs,
/// ms, s, m, h (`1m30s`).
pub fn duration_problem(value: &str) -> Option<String> {
    const UNITS: &[&str] = &["ns", "us", "µs", "ms", "s", "m", "h"];
    let mut rest = value;
    let mut parts = 0;
    while !rest.is_empty() {
        let (whole, after) = digits(rest);
        if whole.is_empty() {
            break;
        }
        let after = match after.strip_prefix('.') {
            Some(fraction) => match digits(fraction) {
                ("", _) => break,
                (_, after) => after,
            },
            None => after,
        };
        // Longest unit first, so that `ms` is not read as `m` followed by garbage.
        let Some(unit) = UNITS
            .iter()
            .filter(|unit| after.starts_with(**unit))
            .max_by_key(|unit| unit.len())
        else {
            break;
        };
        rest = &after[unit.len()..];
        parts += 1;
    }
    (parts == 0 || !rest.is_empty())
        .then(|| "must be a duration such as 90s, 1m30s or 1.5h".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_with_binary_decimal_and_exponent_suffixes() {
        assert_eq!(parse_quantity("1000"), Some(1000.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("-1"), Some(-1.0));
        assert_eq!(parse_quantity(".5"), Some(0.5));
        // 0 × 10^309 is zero, not NaN (found by the CRD pattern property test).
        assert_eq!(parse_quantity(".0E309"), Some(0.0));
        assert_eq!(parse_quantity("0e999"), Some(0.0));
        assert_eq!(parse_quantity("0x"), None);
        for bad in ["", "Gi", "1GB", "1..2", "one", "1e", "--1", "1 Gi"] {
            assert_eq!(parse_quantity(bad), None, "{bad:?} should not parse");
        }
    }

    #[test]
    fn qualified_names_follow_kubernetes_rules() {
        for good in [
            "team",
            "example.com/team",
            "karpenter.sh/capacity-type",
            "a",
            "A_b.c-d",
        ] {
            assert_eq!(qualified_name_problem(good), None, "{good:?}");
        }
        for bad in [
            "",
            "/team",
            "Example.com/team",
            "a/b/c",
            "-team",
            "team-",
            &"x".repeat(64),
        ] {
            assert!(
                qualified_name_problem(bad).is_some(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        assert_eq!(label_value_problem(""), None);
        assert_eq!(label_value_problem("spot"), None);
        assert!(label_value_problem("not ok").is_some());
        assert!(label_value_problem(&"v".repeat(64)).is_some());
    }

    #[test]
    fn eviction_thresholds_are_percentages_or_quantities() {
        for good in ["5%", "10.5%", "100%", "100.0%", "0%", "500Mi", "1Gi"] {
            assert_eq!(eviction_threshold_problem(good), None, "{good:?}");
        }
        for bad in ["101%", "100.5%", "-5%", "5.%", "%", "abc", "-1Gi", "1000%"] {
            assert!(
                eviction_threshold_problem(bad).is_some(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn durations_follow_go_syntax() {
        for good in ["90s", "1m30s", "1.5h", "100ms", "10µs", "2h45m"] {
            assert_eq!(duration_problem(good), None, "{good:?}");
        }
        for bad in ["", "90", "1d", "m", "1.m", "-1s", "1m 30s"] {
            assert!(duration_problem(bad).is_some(), "{bad:?} should be refused");
        }
    }
}
