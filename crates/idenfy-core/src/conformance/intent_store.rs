//! The [`crate::IntentStore`] suite.

use super::{fixtures, secs};
use crate::{CreationIntent, IntentState, IntentStore, Nonce, StoreError, Write};

async fn put<I: IntentStore>(store: &I, intent: CreationIntent) -> CreationIntent {
    store.insert(&intent).await.expect("insert");
    intent
}

async fn reload<I: IntentStore>(store: &I, key: &str) -> CreationIntent {
    store
        .get(key)
        .await
        .expect("get")
        .expect("the intent exists")
}

/// `get` returns exactly what `insert` stored; `None` for an unknown key.
pub async fn get_returns_the_inserted_intent<I: IntentStore>(store: &I) {
    let now = fixtures::now();
    let pending = put(store, fixtures::intent(now)).await;
    assert_eq!(store.get(&pending.key).await.expect("get"), Some(pending));
    let done = CreationIntent {
        state: IntentState::Done,
        minted: Some(fixtures::token(now)),
        flow: crate::Flow::CleanHands,
        ..fixtures::intent(now)
    };
    let done = put(store, done).await;
    assert_eq!(store.get(&done.key).await.expect("get"), Some(done));
    assert_eq!(
        store.get(&fixtures::intent(now).key).await.expect("get"),
        None
    );
}

/// `insert` MUST return `Conflict` when the key exists, keeping the first intent.
pub async fn insert_rejects_a_duplicate_key<I: IntentStore>(store: &I) {
    let now = fixtures::now();
    let first = put(store, fixtures::intent(now)).await;
    let twin = CreationIntent {
        key: first.key.clone(),
        ..fixtures::intent(now)
    };
    let result = store.insert(&twin).await;
    assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
    assert_eq!(reload(store, &first.key).await, first);
}

/// `reclaim` takes over a `Failed` intent or a `Pending` one whose claim is strictly in
/// the past; never a live `Pending` or a `Done` one.
pub async fn reclaim_takes_over_failed_or_expired_intents<I: IntentStore>(store: &I) {
    let now = fixtures::now();
    let pending = put(store, fixtures::intent(now)).await;
    let until = pending.claimed_until;
    for at in [now, until] {
        let w = store
            .reclaim(&pending.key, &Nonce::random(), at + secs(60), at)
            .await;
        assert_eq!(w.expect("reclaim"), Write::NotMatched, "claim live at {at}");
    }
    assert_eq!(reload(store, &pending.key).await, pending);
    let at = until + secs(1);
    let claim = Nonce::random();
    let w = store.reclaim(&pending.key, &claim, at + secs(60), at).await;
    assert_eq!(w.expect("reclaim"), Write::Applied, "expired claim");
    let expected = CreationIntent {
        claim_id: claim,
        claimed_until: at + secs(60),
        ..pending
    };
    assert_eq!(reload(store, &expected.key).await, expected);

    let failed = put(
        store,
        CreationIntent {
            state: IntentState::Failed,
            ..fixtures::intent(now)
        },
    )
    .await;
    let claim = Nonce::random();
    let w = store
        .reclaim(&failed.key, &claim, now + secs(60), now)
        .await;
    assert_eq!(
        w.expect("reclaim"),
        Write::Applied,
        "failed, even with a live claim"
    );
    let expected = CreationIntent {
        state: IntentState::Pending,
        claim_id: claim,
        claimed_until: now + secs(60),
        ..failed
    };
    assert_eq!(reload(store, &expected.key).await, expected);

    let mut done = fixtures::intent(now);
    done.state = IntentState::Done;
    done.claimed_until = now - secs(60);
    let done = put(store, done).await;
    let w = store
        .reclaim(&done.key, &Nonce::random(), now + secs(60), now)
        .await;
    assert_eq!(w.expect("reclaim"), Write::NotMatched, "done");
    assert_eq!(reload(store, &done.key).await, done);
    let unknown = fixtures::intent(now).key;
    let w = store
        .reclaim(&unknown, &Nonce::random(), now + secs(60), now)
        .await;
    assert_eq!(w.expect("reclaim"), Write::NotMatched, "unknown key");
}

/// `record_unknown_mint` (holder only) fails the intent until `retry_at` and counts the
/// unknown outcome with its time; a later reclaim keeps the count.
pub async fn record_unknown_mint_counts_and_defers<I: IntentStore>(store: &I) {
    let now = fixtures::now();
    let intent = put(store, fixtures::intent(now)).await;
    let retry_at = now + secs(60);
    let w = store
        .record_unknown_mint(&intent.key, &Nonce::random(), retry_at, now)
        .await;
    assert_eq!(w.expect("record"), Write::NotMatched, "not the holder");
    assert_eq!(reload(store, &intent.key).await, intent);
    let w = store
        .record_unknown_mint(&intent.key, &intent.claim_id, retry_at, now + secs(1))
        .await;
    assert_eq!(w.expect("record"), Write::Applied);
    let expected = CreationIntent {
        state: IntentState::Failed,
        claimed_until: retry_at,
        unknown_mint_outcomes: 1,
        last_unknown_mint_at: Some(now + secs(1)),
        ..intent.clone()
    };
    assert_eq!(reload(store, &intent.key).await, expected);
    let claim = Nonce::random();
    let w = store
        .reclaim(&intent.key, &claim, retry_at + secs(60), retry_at + secs(1))
        .await;
    assert_eq!(w.expect("reclaim"), Write::Applied);
    let after = reload(store, &intent.key).await;
    assert_eq!(after.state, IntentState::Pending);
    assert_eq!(after.unknown_mint_outcomes, 1, "the count is kept");
}

/// `record_mint` saves the token only for the current claim holder.
pub async fn record_mint_requires_the_claim<I: IntentStore>(store: &I) {
    let now = fixtures::now();
    let intent = put(store, fixtures::intent(now)).await;
    let token = fixtures::token(now);
    let w = store
        .record_mint(&intent.key, &Nonce::random(), &token)
        .await;
    assert_eq!(w.expect("record"), Write::NotMatched, "not the holder");
    assert_eq!(reload(store, &intent.key).await, intent);
    let w = store
        .record_mint(&intent.key, &intent.claim_id, &token)
        .await;
    assert_eq!(w.expect("record"), Write::Applied);
    let expected = CreationIntent {
        minted: Some(token.clone()),
        ..intent.clone()
    };
    assert_eq!(reload(store, &intent.key).await, expected);

    let at = intent.claimed_until + secs(1);
    let claim = Nonce::random();
    let w = store.reclaim(&intent.key, &claim, at + secs(60), at).await;
    assert_eq!(w.expect("reclaim"), Write::Applied);
    let w = store
        .record_mint(&intent.key, &intent.claim_id, &fixtures::token(at))
        .await;
    assert_eq!(w.expect("record"), Write::NotMatched, "claim taken over");
    assert_eq!(reload(store, &intent.key).await.minted, Some(token));
    let unknown = fixtures::intent(now).key;
    let w = store
        .record_mint(&unknown, &claim, &fixtures::token(at))
        .await;
    assert_eq!(w.expect("record"), Write::NotMatched, "unknown key");
}

/// `finish` sets the state only for the current claim holder.
pub async fn finish_requires_the_claim<I: IntentStore>(store: &I) {
    let now = fixtures::now();
    let intent = put(store, fixtures::intent(now)).await;
    let w = store
        .finish(&intent.key, &Nonce::random(), IntentState::Done)
        .await;
    assert_eq!(w.expect("finish"), Write::NotMatched, "not the holder");
    assert_eq!(reload(store, &intent.key).await, intent);
    let w = store
        .finish(&intent.key, &intent.claim_id, IntentState::Failed)
        .await;
    assert_eq!(w.expect("finish"), Write::Applied);
    let failed = CreationIntent {
        state: IntentState::Failed,
        ..intent.clone()
    };
    assert_eq!(reload(store, &intent.key).await, failed);

    let claim = Nonce::random();
    let w = store
        .reclaim(&intent.key, &claim, now + secs(120), now)
        .await;
    assert_eq!(w.expect("reclaim"), Write::Applied);
    let w = store
        .finish(&intent.key, &intent.claim_id, IntentState::Done)
        .await;
    assert_eq!(w.expect("finish"), Write::NotMatched, "superseded claim");
    let w = store.finish(&intent.key, &claim, IntentState::Done).await;
    assert_eq!(w.expect("finish"), Write::Applied);
    assert_eq!(reload(store, &intent.key).await.state, IntentState::Done);
    let unknown = fixtures::intent(now).key;
    let w = store.finish(&unknown, &claim, IntentState::Done).await;
    assert_eq!(w.expect("finish"), Write::NotMatched, "unknown key");
}
