//! Smoke tests: the Valkey commands the lock is built on (`SET NX PX`, `GET`, a Lua
//! compare-and-delete, expiry) behave as we rely on, through fred.

use std::time::Duration;

use dev_services::{unique_name, urls_for_test};
use fred::prelude::{
    Builder, Client, ClientLike, Config, Expiration, KeysInterface, LuaInterface, SetOptions,
};

/// Deletes the key only if it still holds the caller's token (the classic safe unlock).
const COMPARE_AND_DELETE: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
else
    return 0
end
"#;

/// A connected client and a key prefix of this test's own, or `None` (test skipped)
/// without a server.
async fn client(test: &str) -> Option<(Client, String)> {
    let urls = urls_for_test(test)?;
    let config = Config::from_url(&urls.valkey_url).expect("VALKEY_URL is a valid URL");
    let client = Builder::from_config(config)
        .with_connection_config(|connection| {
            connection.connection_timeout = Duration::from_secs(5);
        })
        .with_performance_config(|performance| {
            // fred's default is 0, meaning "wait forever".
            performance.default_command_timeout = Duration::from_secs(5);
        })
        .build()
        .expect("fred client");
    client.init().await.expect("connecting to Valkey");
    Some((client, format!("{}:", unique_name("smoke"))))
}

#[tokio::test]
async fn set_nx_px_takes_the_key_once() {
    let Some((client, prefix)) = client("lock-valkey smoke::set_nx_px_takes_the_key_once").await
    else {
        return;
    };
    let key = format!("{prefix}lock");

    let first: Option<String> = client
        .set(
            &key,
            "token-a",
            Some(Expiration::PX(10_000)),
            Some(SetOptions::NX),
            false,
        )
        .await
        .expect("SET NX PX");
    assert_eq!(first.as_deref(), Some("OK"));
    let second: Option<String> = client
        .set(
            &key,
            "token-b",
            Some(Expiration::PX(10_000)),
            Some(SetOptions::NX),
            false,
        )
        .await
        .expect("SET NX PX");
    assert_eq!(second, None, "NX must refuse a key that exists");

    let holder: Option<String> = client.get(&key).await.expect("GET");
    assert_eq!(holder.as_deref(), Some("token-a"));
    let ttl: i64 = client.pttl(&key).await.expect("PTTL");
    assert!(ttl > 0 && ttl <= 10_000, "PTTL {ttl}");

    let _: i64 = client.del(&key).await.expect("DEL");
    client.quit().await.expect("QUIT");
}

#[tokio::test]
async fn lua_compare_and_delete_only_deletes_the_own_token() {
    let Some((client, prefix)) =
        client("lock-valkey smoke::lua_compare_and_delete_only_deletes_the_own_token").await
    else {
        return;
    };
    let key = format!("{prefix}lock");
    let _: Option<String> = client
        .set(
            &key,
            "token-a",
            Some(Expiration::PX(10_000)),
            Some(SetOptions::NX),
            false,
        )
        .await
        .expect("SET NX PX");

    let wrong: i64 = client
        .eval(COMPARE_AND_DELETE, vec![key.clone()], vec!["token-b"])
        .await
        .expect("EVAL");
    assert_eq!(wrong, 0, "another token must not delete the key");
    let still: Option<String> = client.get(&key).await.expect("GET");
    assert_eq!(still.as_deref(), Some("token-a"));

    let right: i64 = client
        .eval(COMPARE_AND_DELETE, vec![key.clone()], vec!["token-a"])
        .await
        .expect("EVAL");
    assert_eq!(right, 1);
    let gone: Option<String> = client.get(&key).await.expect("GET");
    assert_eq!(gone, None);

    client.quit().await.expect("QUIT");
}

#[tokio::test]
async fn keys_expire() {
    let Some((client, prefix)) = client("lock-valkey smoke::keys_expire").await else {
        return;
    };
    let key = format!("{prefix}short");
    let _: Option<String> = client
        .set(
            &key,
            "token-a",
            Some(Expiration::PX(100)),
            Some(SetOptions::NX),
            false,
        )
        .await
        .expect("SET NX PX");
    let exists: i64 = client.exists(&key).await.expect("EXISTS");
    assert_eq!(exists, 1);

    tokio::time::sleep(Duration::from_millis(300)).await;

    let exists: i64 = client.exists(&key).await.expect("EXISTS");
    assert_eq!(exists, 0, "the key must have expired");
    // Once expired, the key can be taken again.
    let again: Option<String> = client
        .set(
            &key,
            "token-b",
            Some(Expiration::PX(100)),
            Some(SetOptions::NX),
            false,
        )
        .await
        .expect("SET NX PX");
    assert_eq!(again.as_deref(), Some("OK"));

    client.quit().await.expect("QUIT");
}
