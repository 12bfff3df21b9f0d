//! The agent's `/status` `cluster` row (discovery state and problems), read strictly: an agent
//! that does not answer, a body that is not JSON or a malformed row fails the test.

use crate::support::http_get;

/// The `/status` `cluster` row (null until the first discovery ran). An agent that does not
/// answer, a body that is not JSON or a `cluster` that is neither fails the test.
pub fn cluster_row(admin: u16) -> serde_json::Value {
    let (_, body) =
        http_get(admin, "/status").unwrap_or_else(|| panic!("GET /status on {admin}: no answer"));
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/status on {admin} is not JSON ({e}): {body}"));
    let row = v["cluster"].clone();
    assert!(
        row.is_object() || row.is_null(),
        "/status on {admin}: cluster is not an object: {body}"
    );
    row
}

/// The row's `problems`; a missing array or a non-string entry fails the test.
pub fn problems(row: &serde_json::Value) -> Vec<String> {
    row["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("cluster row has no problems array: {row}"))
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap_or_else(|| panic!("a problem that is not a string: {p}"))
                .to_string()
        })
        .collect()
}
