//! idenfy-core's port conformance suite, unchanged, against `MongoRowStore`,
//! `MongoParentStore` and `MongoIntentStore` on a real server (one database per test).
//!
//! The factories use `return` to skip a test when no server is configured: the macro
//! inlines the factory expression into the test body, so `return` ends the test early.

use std::future::ready;

use idenfy_core::Environment;

use crate::support::stores;

idenfy_core::row_store_conformance!(match stores(
    "store-mongo conformance::row_store",
    Environment::Live
)
.await
{
    Some(stores) => ready(stores.rows()),
    None => return,
});

idenfy_core::parent_store_conformance!(match stores(
    "store-mongo conformance::parent_store",
    Environment::Live
)
.await
{
    Some(stores) => ready(stores.parents()),
    None => return,
});

idenfy_core::intent_store_conformance!(match stores(
    "store-mongo conformance::intent_store",
    Environment::Live
)
.await
{
    Some(stores) => ready(stores.intents()),
    None => return,
});
