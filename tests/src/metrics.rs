//! Reading kmsd's Prometheus metrics from a `[metrics] listen` port: one
//! scrape and one series lookup for every test that checks a metric.

use crate::rest::AdminClient;

/// The Prometheus text served on `port`, checked to be a 200 `text/plain`
/// answer (the metrics routes need no credentials).
pub async fn scrape(port: u16) -> String {
    let http = AdminClient::new(port, "", "");
    let reply = http.send(http.unsigned("GET", "/metrics", "")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    reply.text
}

/// The value of one series in `text`, named exactly as exported, e.g.
/// `kmsd_requests_total{code="OK",operation="Decrypt"}`; `None` when it is
/// not exported (yet).
pub fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}
