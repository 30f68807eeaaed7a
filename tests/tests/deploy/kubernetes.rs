//! deploy/kubernetes: strict schema validation, and the cross-references no
//! schema checks.

use serde_json::Value;
use std::{path::PathBuf, process::Command};

use super::*;

fn kubernetes_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

/// Every directory of manifests: the single-node sample (local backend)
/// and the sidecar variant for a 3-node OpenBao cluster.
fn manifest_dirs() -> [PathBuf; 2] {
    [kubernetes_dir(), deploy_dir().join("openbao-ha/kubernetes")]
}

/// Kinds whose schema kubernetes-validate does not ship: their files are
/// checked by `kubernetes_manifests_agree_with_each_other` instead.
const CUSTOM_KINDS: &[&str] = &["ServiceMonitor"];

#[test]
fn kubernetes_manifests_pass_strict_validation() {
    for dir in manifest_dirs() {
        validate_strictly(&dir);
    }
}

fn validate_strictly(dir: &std::path::Path) {
    let files = files_under(dir, ".yaml");
    assert!(files.len() >= 2, "manifests found: {files:?}");
    let mut validated = 0;
    for file in &files {
        let documents = yaml_documents(file);
        let ran = run(Command::new(tool("kubernetes-validate"))
            .arg("--strict")
            .arg(file));
        assert!(
            ran.success,
            "kubernetes-validate --strict {}: {ran}",
            file.display()
        );
        let output = format!("{}{}", ran.stdout, ran.stderr);
        for line in output.lines() {
            // An unknown kind only warns (and passes): allowed for the
            // custom kinds alone.
            let custom = CUSTOM_KINDS
                .iter()
                .any(|k| line.contains(&format!("Couldn't find schema for kind {k} ")));
            assert!(
                line.starts_with("INFO ") && line.contains(" passed for resource ") || custom,
                "kubernetes-validate: {line}"
            );
        }
        let core = documents
            .iter()
            .filter(|d| !CUSTOM_KINDS.contains(&str_at(d, "/kind")))
            .count();
        let passed = output.matches(" passed for resource ").count();
        assert_eq!(passed, core, "{}: {output}", file.display());
        validated += passed;
    }
    assert!(validated >= 4, "only {validated} resources validated");
}

fn kubernetes_resources(dir: &std::path::Path) -> Vec<Value> {
    files_under(dir, ".yaml")
        .iter()
        .flat_map(|f| yaml_documents(f))
        .collect()
}

fn resource<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|r| str_at(r, "/kind") == kind && str_at(r, "/metadata/name") == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The kmsd.toml of the ConfigMap, parsed.
fn configmap_kmsd_toml(all: &[Value]) -> toml::Table {
    let configmap = resource(all, "ConfigMap", "kmsd-config");
    toml::from_str(str_at(configmap, "/data/kmsd.toml")).unwrap()
}

#[test]
fn kubernetes_manifests_agree_with_each_other() {
    for dir in manifest_dirs() {
        manifests_agree(&dir);
    }
}

fn manifests_agree(dir: &std::path::Path) {
    let all = kubernetes_resources(dir);
    let config = configmap_kmsd_toml(&all);
    let metrics_port: u16 = config["metrics"]["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let sts = resource(&all, "StatefulSet", "storage");
    let pod = &sts["spec"]["template"];
    let spec = &pod["spec"];
    assert!(labels_match(
        &sts["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let containers: Vec<&Value> = spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(spec["containers"].as_array().unwrap())
        .collect();
    let kmsd = containers
        .iter()
        .find(|c| c["name"] == "kmsd")
        .expect("a kmsd container");
    let storage = containers
        .iter()
        .find(|c| c["name"] == "storage")
        .expect("a storage container");
    assert_eq!(kmsd["restartPolicy"], "Always", "kmsd is a native sidecar");

    // Security context and resources on every container.
    for container in &containers {
        let name = str_at(container, "/name");
        let sc = &container["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(
            sc["capabilities"].get("add").is_none(),
            "{name} adds capabilities"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][kind].get(resource).is_some(),
                    "{name} has no {kind}.{resource}"
                );
            }
        }
    }
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // fsGroup's recursive chmod would give the group access to the key
    // files on every mount, which kmsd refuses.
    assert_eq!(
        spec["securityContext"]["fsGroupChangePolicy"],
        "OnRootMismatch"
    );

    // The probes hit kmsd's metrics listener.
    let ports = kmsd["ports"].as_array().unwrap();
    let metrics = ports
        .iter()
        .find(|p| p["containerPort"] == metrics_port)
        .unwrap_or_else(|| panic!("kmsd exposes no port {metrics_port}"));
    let metrics_name = str_at(metrics, "/name");
    for (probe, path) in [
        ("startupProbe", "/health/ready"),
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ] {
        assert_eq!(kmsd[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(kmsd[probe]["httpGet"]["port"], metrics_name, "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], metrics_port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The paths in kmsd.toml are on the right volumes.
    let mount_of = |container: &Value, volume: &str| -> String {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| str_at(m, "/mountPath").to_owned())
            .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))
    };
    let volume = |name: &str| -> &Value {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let socket = PathBuf::from(config["server"]["unix_socket"].as_str().unwrap());
    let socket_dir = socket.parent().unwrap().to_str().unwrap().to_owned();
    assert_eq!(mount_of(kmsd, "kmsd-socket"), socket_dir);
    assert_eq!(mount_of(storage, "kmsd-socket"), socket_dir);
    assert!(volume("kmsd-socket").get("emptyDir").is_some());
    let endpoint = storage["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "KMSD_ENDPOINT")
        .expect("the storage container is told where kmsd is");
    assert_eq!(endpoint["value"], format!("unix:{}", socket.display()));
    let backend = &config["backend"];
    let vault = match backend["backend_type"].as_str().unwrap() {
        "local" => false,
        "vault" => true,
        other => panic!("{}: no checks for backend {other}", dir.display()),
    };
    // Local: the sealed keys and the runtime state share one volume; with
    // Vault only the state is kept.
    let state_volume = if vault { "kmsd-state" } else { "kmsd-keys" };
    let state_mount = mount_of(kmsd, state_volume);
    assert!(
        config["server"]["state_dir"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{state_mount}/"))
    );
    assert!(
        sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["metadata"]["name"] == state_volume),
        "{state_volume} is a persistent volume"
    );
    let secrets_mount = mount_of(kmsd, "kmsd-secrets");
    assert!(volume("kmsd-secrets").get("secret").is_some());
    let from_secret = |path: &toml::Value| {
        let key = path
            .as_str()
            .unwrap()
            .strip_prefix(&format!("{secrets_mount}/"))
            .unwrap_or_else(|| panic!("{path} does not come from the Secret volume"));
        assert!(!key.contains('/'), "{path}");
    };
    if vault {
        let approle = &backend["auth_method"]["approle"];
        from_secret(&approle["role_id_file"]);
        from_secret(&approle["secret_id_file"]);
        from_secret(&backend["tls"]["ca_cert_path"]);
        // One address, or every node of an HA cluster: all over TLS.
        let addresses = match &backend["address"] {
            toml::Value::Array(list) => list.iter().map(|a| a.as_str().unwrap()).collect(),
            one => vec![one.as_str().unwrap()],
        };
        assert!(!addresses.is_empty());
        for address in addresses {
            assert!(address.starts_with("https://"), "{address}");
        }
        // Any pod opens any blob: several replicas, on separate machines.
        let replicas = sts["spec"]["replicas"].as_i64().unwrap();
        assert!(replicas >= 3, "{replicas} replicas");
        let anti = &spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            [0];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        assert!(labels_match(
            &anti["labelSelector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ));
        // [cluster] peers: every replica's metrics listener, by its stable
        // name under the governing Service.
        let governing = str_at(sts, "/spec/serviceName");
        let headless = resource(&all, "Service", governing);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
        let name = str_at(sts, "/metadata/name");
        let expected: Vec<String> = (0..replicas)
            .map(|i| format!("http://{name}-{i}.{governing}:{metrics_port}"))
            .collect();
        let peers: Vec<&str> = config["cluster"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(peers, expected, "{}", dir.display());
    } else {
        let keys_mount = mount_of(kmsd, "kmsd-keys");
        let key_dir = backend["key_dir"].as_str().unwrap();
        assert!(
            key_dir.starts_with(&format!("{keys_mount}/")),
            "backend.key_dir {key_dir} must be a subdirectory of the volume (its root is group-accessible under fsGroup)"
        );
        from_secret(&backend["sealing"]["passphrase_file"]);
    }
    let config_mount = mount_of(kmsd, "kmsd-config");
    let policy = config["policy"]["file"].as_str().unwrap();
    let policy_key = policy
        .strip_prefix(&format!("{config_mount}/"))
        .expect("the policy comes from the ConfigMap volume");
    let configmap = resource(&all, "ConfigMap", "kmsd-config");
    assert!(configmap["data"].get(policy_key).is_some());
    assert_eq!(
        str_at(&volume("kmsd-config")["configMap"], "/name"),
        "kmsd-config"
    );
    let args: Vec<&str> = kmsd["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["serve", "--config", &format!("{config_mount}/kmsd.toml")]
    );

    // The policy grants the storage container's uid the data plane.
    let policy: toml::Table =
        toml::from_str(str_at(configmap, &format!("/data/{policy_key}"))).unwrap();
    let storage_uid = storage["securityContext"]["runAsUser"].as_i64().unwrap();
    let identity = policy["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("unix_uid").and_then(toml::Value::as_integer) == Some(storage_uid))
        .expect("the policy names the storage container's uid");
    let granted: Vec<&str> = identity["policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            policy["policies"][p.as_str().unwrap()]["allow"]
                .as_array()
                .unwrap()
        })
        .map(|op| op.as_str().unwrap())
        .collect();
    for op in ["GenerateDataKey", "Decrypt"] {
        assert!(
            granted.contains(&op),
            "the storage server may not {op}: {granted:?}"
        );
    }
    // The socket's group is the pod's fsGroup, which every container has.
    assert_eq!(
        config["server"]["unix_socket_mode"].as_str().unwrap(),
        "0660"
    );
    assert!(spec["securityContext"]["fsGroup"].is_i64());

    // The metrics Service and the ServiceMonitor find kmsd's port.
    let service = resource(&all, "Service", "kmsd-metrics");
    assert!(labels_match(
        &service["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let service_port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["targetPort"] == metrics_name)
        .expect("kmsd-metrics targets kmsd's metrics port");
    // One ServiceMonitor (deploy/kubernetes) serves every variant.
    let monitors = kubernetes_resources(&kubernetes_dir());
    let monitor = resource(&monitors, "ServiceMonitor", "kmsd");
    assert_eq!(str_at(monitor, "/apiVersion"), "monitoring.coreos.com/v1");
    assert!(labels_match(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service_port["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    // The job the alert rules and the dashboard select.
    assert!(
        endpoint["relabelings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "kmsd")
    );
}

// === Prometheus ===
