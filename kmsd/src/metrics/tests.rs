//! The metrics' own tests.

use super::*;

#[test]
fn requests_are_counted_by_operation_and_code() {
    let metrics = Metrics::new();
    metrics.request(Operation::Decrypt, Code::InvalidArgument, 0.001);
    metrics.request(Operation::Decrypt, Code::InvalidArgument, 0.002);
    metrics.request(Operation::GenerateDataKey, Code::Ok, 0.0001);
    let text = metrics.encode();
    assert!(
        text.contains(r#"kmsd_requests_total{code="INVALID_ARGUMENT",operation="Decrypt"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"kmsd_requests_total{code="OK",operation="GenerateDataKey"} 1"#));
    assert!(text.contains(r#"kmsd_request_duration_seconds_count{operation="Decrypt"} 2"#));
    assert!(text.contains(r#"kmsd_service_state{state="NotConfigured"} 1"#));
    assert!(text.contains("kmsd_build_info{version="));
}

/// An undocumented metric does not exist for an operator.
#[test]
fn every_metric_is_documented() {
    let docs = include_str!("../../../docs/metrics.md");
    let source = [include_str!("../metrics.rs"), include_str!("usage.rs")].concat();
    let names: Vec<&str> = source
        .split('"')
        .filter(|s| {
            s.len() > 5
                && s.starts_with("kmsd_")
                && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .collect();
    assert!(names.len() >= 18, "{names:?}");
    for name in names {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is missing from docs/metrics.md"
        );
    }
}
