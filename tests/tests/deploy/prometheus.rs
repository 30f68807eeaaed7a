//! deploy/prometheus: rules, their unit tests, and the dashboard query only
//! what kmsd exports.

use kms_client::proto;
use kmsd_tests::{
    Kmsd, KmsdOptions, ctx, free_port, private_dir, rest::AdminClient, workspace_root,
};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use super::*;

fn prometheus_dir() -> PathBuf {
    deploy_dir().join("prometheus")
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_is_unit_tested() {
    let dir = prometheus_dir();
    let ran = run(Command::new(tool("promtool"))
        .args(["check", "rules", "kmsd-alerts.yaml"])
        .current_dir(&dir));
    assert!(
        ran.success && ran.stdout.contains("SUCCESS"),
        "promtool check rules: {ran}"
    );
    let ran = run(Command::new(tool("promtool"))
        .args(["test", "rules", "kmsd-alerts.test.yaml"])
        .current_dir(&dir));
    assert!(
        ran.success && ran.stdout.contains("SUCCESS"),
        "promtool test rules: {ran}"
    );

    let rules = &yaml_documents(&dir.join("kmsd-alerts.yaml"))[0];
    let alerts: BTreeSet<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for required in [
        "KmsdDown",
        "KmsdBackendUnavailable",
        "KmsdHighErrorRate",
        "KmsdHighLatency",
        "KmsdCircuitBreakerOpen",
        "KmsdVaultTokenExpiring",
        "KmsdKeysPendingDeletion",
        "KmsdSelfProbeFailing",
        "KmsdAuditWriteErrors",
        "KmsdConfigDrift",
        "KmsdScheduledRotationFailing",
    ] {
        assert!(alerts.contains(required), "no {required} alert");
    }
    let tests = &yaml_documents(&dir.join("kmsd-alerts.test.yaml"))[0];
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .map(|c| str_at(c, "/alertname"))
        .collect();
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts never fired in kmsd-alerts.test.yaml: {untested:?}"
    );
}

/// Every PromQL expression of the dashboard (panel targets and variable
/// queries), with Grafana's variables replaced by values Prometheus takes.
fn dashboard_expressions() -> Vec<String> {
    let text = fs::read_to_string(prometheus_dir().join("kmsd-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    let mut pending = vec![&dashboard];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(SELECTOR, label) queries SELECTOR.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector.to_owned())
                .unwrap_or_else(|| query.to_owned());
            exprs.push(inner);
        }
    }
    assert!(exprs.len() >= 10, "the dashboard queries {exprs:?}");
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
        })
        .collect()
}

/// The `kmsd_*` series names an expression uses.
fn kmsd_series(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("kmsd_") {
        let start = i + at;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let end = start
            + expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(expr.len() - start);
        // Label values such as job="kmsd" never start with kmsd_.
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn dashboard_expressions_are_valid_promql() {
    // promtool parses every expression of a rules file: wrap the
    // dashboard's as recording rules.
    let exprs = dashboard_expressions();
    let dir = private_dir();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
        assert!(
            !kmsd_series(expr).is_empty() || expr.starts_with("up{"),
            "a dashboard query uses no kmsd metric: {expr}"
        );
    }
    let file = dir.path().join("dashboard-rules.yaml");
    fs::write(&file, rules).unwrap();
    let ran = run(Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&file));
    assert!(
        ran.success,
        "a dashboard expression is not valid PromQL: {ran}"
    );
}

/// Series only a kmsd with a remote (Vault) backend creates.
const REMOTE_BACKEND_ONLY: &[&str] = &[
    "kmsd_cache_lookups_total",
    "kmsd_cache_evictions_total",
    // Only the Vault backend has a circuit breaker (docs/vault.md).
    "kmsd_circuit_breaker_open",
];

#[tokio::test]
async fn dashboard_and_alerts_query_only_metrics_kmsd_exports() {
    let port = free_port();
    let mut options = KmsdOptions::local();
    options.extra_toml =
        format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[health]\nprobe_interval_secs = 1\n");
    let kmsd = Kmsd::start(options).await;
    // Series of label vectors appear once used: use the data plane, the
    // cache and the key admin.
    let client = kmsd.client().await;
    let context = ctx(&[("bucket", "b")]);
    let key = client.generate_data_key(None, &context).await.unwrap();
    for _ in 0..2 {
        client.decrypt(&key.blob, &context, None).await.unwrap();
    }
    client
        .admin()
        .clear_cache(proto::ClearCacheRequest {})
        .await
        .unwrap();
    client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let http = AdminClient::new(port, "", "");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exported = loop {
        let reply = http.send(http.unsigned("GET", "/metrics", "")).await;
        assert_eq!(reply.status, 200);
        let names: BTreeSet<String> = reply
            .text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
            .collect();
        // The key counts are gathered by a background task.
        if names.contains("kmsd_keys") || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut used = BTreeMap::new();
    for expr in dashboard_expressions() {
        for name in kmsd_series(&expr) {
            used.insert(name, "kmsd-dashboard.json");
        }
    }
    let rules = &yaml_documents(&prometheus_dir().join("kmsd-alerts.yaml"))[0];
    for rule in rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        for name in kmsd_series(str_at(rule, "/expr")) {
            used.insert(name, "kmsd-alerts.yaml");
        }
    }
    assert!(used.len() >= 15, "queried: {used:?}");
    // The data-key cache serves remote backends only (a local unwrap is
    // cheaper than a lookup), so a local kmsd never creates these series.
    // They must still be registered by kmsd, and the list must not outlive
    // the reason: once exported here, a name has to leave it.
    let metrics_source = fs::read_to_string(workspace_root().join("kmsd/src/metrics.rs")).unwrap();
    for name in REMOTE_BACKEND_ONLY {
        assert!(
            metrics_source.contains(&format!("\"{name}\"")),
            "{name} is not a metric of kmsd/src/metrics.rs"
        );
        assert!(
            !exported.contains(*name),
            "{name} is exported by a local kmsd now: drop it from REMOTE_BACKEND_ONLY"
        );
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| {
            !exported.contains(name.as_str()) && !REMOTE_BACKEND_ONLY.contains(&name.as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported by kmsd: {missing:?}\nexported: {exported:?}"
    );
}
