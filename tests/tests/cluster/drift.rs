//! Drift detection: three sidecars on one OpenBao cluster agree; one is
//! reconfigured and `kmsd cluster check`, `/kms/status`'s
//! `cluster_config` and `kmsd_config_info` all show it, naming the field,
//! never a secret.

use super::*;

/// A sidecar of the drift test: its kmsd and its metrics port.
struct Sidecar {
    kmsd: Kmsd,
    metrics_port: u16,
}

impl Sidecar {
    fn endpoint(&self) -> String {
        self.kmsd.endpoint().to_string()
    }

    async fn fingerprint_metric(&self) -> String {
        let text = kmsd_tests::metrics::scrape(self.metrics_port).await;
        kmsd::cluster::fingerprint_from_metrics(&text)
            .unwrap_or_else(|| panic!("no kmsd_config_info:\n{text}"))
            .to_owned()
    }

    async fn status(&self) -> proto::StatusResponse {
        self.kmsd
            .client()
            .await
            .admin()
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }
}

fn vault_json(cluster: &RaftCluster, node: usize, token: &str, extra: &str) -> String {
    format!(
        r#"{{"backend_type": "vault", "address": "{}", "auth_method": {{"token": "{token}"}}, "default_key_id": "drift-default"{extra}}}"#,
        cluster.address(node)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_check_names_the_reconfigured_sidecar_and_the_field() {
    let cluster = RaftCluster::shared().await;
    let token = cluster.kmsd_token().await;
    let active = cluster.active().await;
    let metrics_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut sidecars = Vec::new();
    let mut admin = None;
    for (i, &metrics_port) in metrics_ports.iter().enumerate() {
        let mut options = KmsdOptions {
            backend_toml: Some(cluster.backend_toml(active, &token, "drift-default")),
            ..KmsdOptions::local()
        };
        options.extra_toml = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
        if i == 0 {
            // Sidecar A reports on its peers in /kms/status.
            options.extra_toml.push_str(&format!(
                "[cluster]\nnode_name = \"node-a\"\npeers = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\npeer_timeout_ms = 1000\n",
                metrics_ports[1], metrics_ports[2]
            ));
            let (options_with_admin, port) = rest::with_admin(options, "admin", "admin-secret");
            options = options_with_admin;
            admin = Some(AdminClient::new(port, "admin", "admin-secret"));
        }
        sidecars.push(Sidecar {
            kmsd: Kmsd::start(options).await,
            metrics_port,
        });
    }
    let admin = admin.unwrap();
    let endpoints: Vec<String> = sidecars.iter().map(Sidecar::endpoint).collect();

    // One endpoint is a usage error (2), not drift (1).
    let (code, _, stderr) = cluster_check(&endpoints[..1]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("at least twice"), "{stderr}");

    // All three agree.
    let (code, report, stderr) = cluster_check(&endpoints);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["consistent"], true);
    let agreed = sidecars[0].status().await.config_fingerprint;
    assert_eq!(agreed.len(), 16);
    assert_eq!(report["reference_fingerprint"], agreed.as_str());
    for sidecar in &sidecars {
        assert_eq!(sidecar.fingerprint_metric().await, agreed);
    }
    // `kmsd status` shows it too, with the fields it covers.
    let output = Command::new(binary("kmsd"))
        .args(["--endpoint", &endpoints[0], "status"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let cli_status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cli_status["config_fingerprint"], agreed.as_str());
    assert_eq!(
        cli_status["config_fields"]["vault_addresses"],
        cluster.address(active).as_str()
    );
    let status = admin.get("/kms/status").await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.json["config_fingerprint"], agreed.as_str());
    assert_eq!(status.json["config_fields"]["backend_type"], "vault");
    let block = &status.json["cluster_config"];
    assert_eq!(block["consistent"], true, "{block}");
    assert_eq!(block["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(block["nodes"][0]["host"], "node-a");

    // Reconfigure B alone: another metadata-cache TTL.
    let b = sidecars[1].kmsd.client().await;
    b.admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: vault_json(cluster, active, &token, r#", "cache_ttl_seconds": 2"#),
            discard_previous: true,
            decrypt_only: false,
        })
        .await
        .unwrap();
    let drifted = sidecars[1].status().await.config_fingerprint;
    assert_ne!(drifted, agreed);
    assert_eq!(sidecars[1].fingerprint_metric().await, drifted);

    let (code, report, stderr) = cluster_check(&endpoints);
    assert_eq!(code, 1, "{report}\n{stderr}");
    assert_eq!(report["consistent"], false);
    assert_eq!(report["reference_fingerprint"], agreed.as_str());
    let nodes = report["nodes"].as_array().unwrap();
    assert!(nodes[0].get("differs").is_none() && nodes[2].get("differs").is_none());
    assert_eq!(nodes[1]["host"], endpoints[1].as_str());
    assert_eq!(nodes[1]["config_fingerprint"], drifted.as_str());
    let differs = nodes[1]["differs"].as_array().unwrap();
    assert_eq!(differs.len(), 1, "{report}");
    assert_eq!(differs[0]["field"], "vault_metadata_cache_ttl_seconds");
    assert_eq!(differs[0]["value"], "2");
    assert_eq!(differs[0]["reference"], "5");
    assert!(
        stderr.contains(&format!(
            "drift: {} differs from the reference in vault_metadata_cache_ttl_seconds",
            endpoints[1]
        )),
        "{stderr}"
    );
    let status = admin.get("/kms/status").await;
    let block = &status.json["cluster_config"];
    assert_eq!(block["consistent"], false, "{block}");
    assert_eq!(block["nodes"][1]["config_fingerprint"], drifted.as_str());
    assert_eq!(block["nodes"][2]["config_fingerprint"], agreed.as_str());
    // Neither report, nor the status, carries the token.
    for text in [report.to_string(), stderr, status.text.clone()] {
        assert!(!text.contains(&token), "a token leaked: {text}");
    }

    // B back in line; then C gone: reported as unreachable, exit 3.
    b.admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: vault_json(cluster, active, &token, ""),
            discard_previous: true,
            decrypt_only: false,
        })
        .await
        .unwrap();
    let (code, report, _) = cluster_check(&endpoints);
    assert_eq!(code, 0, "{report}");
    sidecars[2].kmsd.kill9();
    let (code, report, stderr) = cluster_check(&endpoints);
    assert_eq!(code, 3, "{report}\n{stderr}");
    assert!(report["nodes"][2]["error"].is_string(), "{report}");
    let status = admin.get("/kms/status").await;
    let block = &status.json["cluster_config"];
    assert_eq!(block["consistent"], false, "{block}");
    assert!(
        block["nodes"][2]["error"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{block}"
    );
}
