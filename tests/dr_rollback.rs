//! Integration: a `georelay switchover` whose promote target is down fails at the check step,
//! rolls back (nothing re-pointed) and the origin keeps accepting writes. Real servers and agents.

mod dr_support;
mod support;

use dr_support::{georelay, status, two_sites};
use support::free_port;

#[test]
fn switchover_with_the_promote_target_down_rolls_back_at_check() {
    let s = two_sites(&[]);
    let token = s.token.path.display().to_string();
    let down = format!("127.0.0.1:{}", free_port());
    let out = georelay(&[
        "switchover",
        "--origin",
        &s.origin.addr(),
        "--site",
        &format!("http://127.0.0.1:{}", s.a.admin_port),
        "--region",
        &format!("http://127.0.0.1:{}", s.b.admin_port),
        "--promote",
        &down,
        "--token-file",
        &token,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("FAILED at step check"), "{err}");
    assert!(err.contains(&down) && err.contains("rolled back"), "{err}");
    let mut c = s.origin.client();
    assert_eq!(c.cmd_str(&["SET", "still", "writable"]), "OK");
    assert_eq!(s.origin.info_field("replication", "role"), "master");
    for a in [&s.a, &s.b] {
        assert_eq!(status(a)["upstream"]["override_in_force"], false);
    }
}
