//! `kmsd cluster check`: asks every sidecar (one `--endpoint` each) for its
//! status and compares their configuration fingerprints; where they
//! differ, names the sidecars and the fields (docs/cli.md).

use std::{collections::BTreeMap, process::ExitCode};

use clap::{Args, Subcommand};
use kms_client::{KmsClient, proto};
use serde::Serialize;

use super::{client::ClientArgs, output};

/// Exit status when the sidecars that answered disagree.
const EXIT_DRIFT: u8 = 1;
/// Exit status for a usage error (as clap's): fewer than two endpoints, or
/// one that does not parse. Distinct from drift, so a script never takes
/// a typo for a disagreement.
const EXIT_USAGE: u8 = 2;
/// Exit status when they agree but some sidecar could not be asked.
const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Compare the configuration fingerprints of several sidecars (give
    /// --endpoint once per sidecar). Exit status 0: they agree; 1: they
    /// differ; 2: usage error; 3: they agree but some could not be asked.
    Check,
}

#[derive(Debug, Serialize)]
struct CheckOut {
    consistent: bool,
    /// The fingerprint most sidecars have (ties: the earliest endpoint's).
    reference_fingerprint: String,
    nodes: Vec<NodeOut>,
}

#[derive(Debug, Serialize)]
struct NodeOut {
    host: String,
    config_fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// How this sidecar differs from the reference. Field values are never
    /// secrets: the fingerprint covers only non-secret settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    differs: Vec<FieldDiff>,
}

#[derive(Debug, Serialize)]
struct FieldDiff {
    field: String,
    value: Option<String>,
    reference: Option<String>,
}

pub(crate) fn run(client: ClientArgs, args: ClusterArgs) -> ExitCode {
    let ClusterCommand::Check = args.command;
    let configs = match configs(&client) {
        Ok(configs) => configs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let outcome = super::client::block_on_value(check(configs));
    let (report, code) = match outcome {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = output::print_json(&report) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    for node in &report.nodes {
        if let Some(error) = &node.error {
            eprintln!("unreachable: {}: {error}", node.host);
        } else if !node.differs.is_empty() {
            let fields: Vec<&str> = node.differs.iter().map(|d| d.field.as_str()).collect();
            eprintln!(
                "drift: {} differs from the reference in {}",
                node.host,
                fields.join(", ")
            );
        }
    }
    ExitCode::from(code)
}

type Answer = Result<proto::StatusResponse, String>;

/// Every `--endpoint` with its client configuration; at least two.
fn configs(client: &ClientArgs) -> anyhow::Result<Vec<(String, kms_client::ClientConfig)>> {
    let endpoints = client.endpoints();
    if endpoints.len() < 2 {
        anyhow::bail!("give --endpoint once per sidecar, at least twice");
    }
    endpoints
        .iter()
        .map(|e| Ok((e.clone(), client.config_for(e)?)))
        .collect()
}

/// Asks every sidecar at once (each within `--timeout`) and compares.
async fn check(configs: Vec<(String, kms_client::ClientConfig)>) -> anyhow::Result<(CheckOut, u8)> {
    let mut asks = tokio::task::JoinSet::new();
    let mut endpoints = Vec::with_capacity(configs.len());
    for (index, (endpoint, config)) in configs.into_iter().enumerate() {
        endpoints.push(endpoint);
        asks.spawn(async move { (index, ask(config).await) });
    }
    let mut answers: Vec<Answer> = vec![Err("not asked".into()); endpoints.len()];
    while let Some(joined) = asks.join_next().await {
        let (index, answer) = joined?;
        answers[index] = answer;
    }
    Ok(compare(endpoints.into_iter().zip(answers).collect()))
}

async fn ask(config: kms_client::ClientConfig) -> Answer {
    let client = KmsClient::connect_with(config)
        .await
        .map_err(|e| e.to_string())?;
    client
        .admin()
        .status(proto::StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| kms_client::Error::from(e).to_string())
}

fn compare(answers: Vec<(String, Answer)>) -> (CheckOut, u8) {
    // The reference: the fingerprint most sidecars share; the first
    // endpoint wins ties, so the order of --endpoint decides.
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (_, answer) in &answers {
        if let Ok(status) = answer {
            match counts
                .iter_mut()
                .find(|(fp, _)| *fp == status.config_fingerprint)
            {
                Some((_, n)) => *n += 1,
                None => counts.push((&status.config_fingerprint, 1)),
            }
        }
    }
    let reference = counts
        .iter()
        .fold(None::<(&str, usize)>, |best, &(fp, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((fp, n)),
        })
        .map(|(fp, _)| fp.to_owned())
        .unwrap_or_default();
    let reference_fields: BTreeMap<String, String> = answers
        .iter()
        .find_map(|(_, a)| {
            a.as_ref()
                .ok()
                .filter(|s| s.config_fingerprint == reference)
        })
        .map(|s| s.config_fields.clone().into_iter().collect())
        .unwrap_or_default();
    let mut drift = false;
    let mut unreachable = false;
    let nodes = answers
        .into_iter()
        .map(|(host, answer)| match answer {
            Ok(status) => {
                let state = output::state_name(status.state());
                let fields: BTreeMap<String, String> = status.config_fields.into_iter().collect();
                let mut differs = Vec::new();
                if status.config_fingerprint != reference {
                    drift = true;
                    let names: std::collections::BTreeSet<&String> =
                        fields.keys().chain(reference_fields.keys()).collect();
                    for name in names {
                        let (value, wanted) = (fields.get(name), reference_fields.get(name));
                        if value != wanted {
                            differs.push(FieldDiff {
                                field: name.clone(),
                                value: value.cloned(),
                                reference: wanted.cloned(),
                            });
                        }
                    }
                }
                NodeOut {
                    host,
                    config_fingerprint: status.config_fingerprint,
                    state: Some(state),
                    error: None,
                    differs,
                }
            }
            Err(error) => {
                unreachable = true;
                NodeOut {
                    host,
                    config_fingerprint: String::new(),
                    state: None,
                    error: Some(error),
                    differs: Vec::new(),
                }
            }
        })
        .collect();
    let code = match (drift, unreachable) {
        (true, _) => EXIT_DRIFT,
        (false, true) => EXIT_UNREACHABLE,
        (false, false) => 0,
    };
    (
        CheckOut {
            consistent: code == 0,
            reference_fingerprint: reference,
            nodes,
        },
        code,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(fp: &str, fields: &[(&str, &str)]) -> Answer {
        Ok(proto::StatusResponse {
            config_fingerprint: fp.into(),
            config_fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn the_odd_one_out_is_named_with_its_fields() {
        let (out, code) = compare(vec![
            (
                "a".into(),
                status("11", &[("default_key_id", "k"), ("x", "1")]),
            ),
            (
                "b".into(),
                status("22", &[("default_key_id", "other"), ("x", "1")]),
            ),
            (
                "c".into(),
                status("11", &[("default_key_id", "k"), ("x", "1")]),
            ),
        ]);
        assert_eq!(code, EXIT_DRIFT);
        assert!(!out.consistent);
        assert_eq!(out.reference_fingerprint, "11");
        assert!(out.nodes[0].differs.is_empty() && out.nodes[2].differs.is_empty());
        assert_eq!(out.nodes[1].differs.len(), 1);
        assert_eq!(out.nodes[1].differs[0].field, "default_key_id");
    }

    #[test]
    fn agreement_and_unreachable_sidecars_have_their_own_exit_codes() {
        let agree = compare(vec![
            ("a".into(), status("11", &[])),
            ("b".into(), status("11", &[])),
        ]);
        assert_eq!(agree.1, 0);
        assert!(agree.0.consistent);
        let down = compare(vec![
            ("a".into(), status("11", &[])),
            ("b".into(), Err("connection refused".into())),
        ]);
        assert_eq!(down.1, EXIT_UNREACHABLE);
        assert!(!down.0.consistent);
        // A tie: the first endpoint's fingerprint is the reference.
        let tie = compare(vec![
            ("a".into(), status("11", &[])),
            ("b".into(), status("22", &[])),
        ]);
        assert_eq!(tie.0.reference_fingerprint, "11");
        assert_eq!(tie.1, EXIT_DRIFT);
    }
}
