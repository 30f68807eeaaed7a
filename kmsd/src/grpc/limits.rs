//! Request-size limits answered with the code the gRPC spec asks for.
//!
//! tonic refuses a message over `max_decoding_message_size` with
//! OUT_OF_RANGE; the gRPC spec (and grpc-go, grpc-java) answer
//! RESOURCE_EXHAUSTED, which is what clients retry-classify on. tonic sends
//! that refusal as a trailers-only response, so the status sits in the
//! response headers and can be rewritten without touching the body.

use http::{HeaderValue, Response};

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Rewrites tonic's "message too large" OUT_OF_RANGE into RESOURCE_EXHAUSTED.
pub fn oversized_as_resource_exhausted<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let is_size_refusal = headers
        .get("grpc-status")
        .is_some_and(|s| s == OUT_OF_RANGE)
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if is_size_refusal {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_size_refusals_are_rewritten() {
        let response = |status: &'static str, message: &'static str| {
            let mut r = Response::new(());
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from_static(status));
            r.headers_mut()
                .insert("grpc-message", HeaderValue::from_static(message));
            r
        };
        let rewritten = oversized_as_resource_exhausted(response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%20102404%20bytes",
        ));
        assert_eq!(rewritten.headers()["grpc-status"], "8");
        let untouched = oversized_as_resource_exhausted(response("11", "page%20out%20of%20range"));
        assert_eq!(untouched.headers()["grpc-status"], "11");
        let untouched =
            oversized_as_resource_exhausted(response("3", "message%20length%20too%20large"));
        assert_eq!(untouched.headers()["grpc-status"], "3");
    }
}
