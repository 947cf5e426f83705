//! The server answers a real client end to end.

mod common;

use common::TestServer;

#[test]
fn set_get_del_through_a_real_client() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut c)
        .expect("set");
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).expect("get");
    assert_eq!(v.as_deref(), Some("v"));
    let n: i64 = redis::cmd("DEL")
        .arg("k")
        .arg("nope")
        .query(&mut c)
        .expect("del");
    assert_eq!(n, 1);
    let pong: String = redis::cmd("PING").query(&mut c).expect("ping");
    assert_eq!(pong, "PONG");
    drop(c);
    server.stop();
}
