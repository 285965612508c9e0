//! Creating sessions: get-or-create, reuse of a recent APPROVED row, and
//! idempotency that never mints twice.
//!
//! Every creation runs under a [`CreationIntent`] keyed by the idempotency key (or, for the
//! drop-in path, by the parent id). The minted token is saved in the intent BEFORE the row
//! is written, so a retry after a crash finishes the job with the same token instead of
//! paying for another; the parent is written last, so a failed mint leaves nothing that
//! counts as a session. The life of an intent is in `docs/data-model.md#creation-intents`.

use serde::Serialize;
use tracing::{error, info, warn};

use crate::{
    Backend, Clock, CreationIntent, Flow, IdenfyApi, IdenfyError, IdenfyRow, IntentState,
    IntentStore, MintedToken, Nonce, Parent, ParentId, ParentStatus, ParentStore, RowId, RowStore,
    SessionView, Sessions, SigDigest, StoreError,
    journal::{JournaledMint, MintTarget},
    resolver::{after, before},
};

/// The longest `retryAfterMs` of an in-progress answer for an Idempotency-Key.
pub const IN_PROGRESS_RETRY_MS: u64 = 1000;

/// `POST /internal/sessions`.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The owner of the new session (stored on the parent and the row).
    pub sig_digest: SigDigest,
    /// Which kind of parent to create.
    pub flow: Flow,
    /// The `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
}

/// A parent and its iDenfy row.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The parent session's id.
    pub session_id: ParentId,
    /// The iDenfy row's id (the parent's `idenfySessionId`).
    pub idenfy_session_id: RowId,
    /// The parent's flow.
    pub flow: Flow,
    /// An APPROVED row of the last days was linked instead of minting.
    pub reused: bool,
    /// The result of an earlier request (same idempotency key, or an already linked row).
    pub replayed: bool,
    /// The iDenfy session as the client sees it (token, redirect URL, status).
    pub idenfy: SessionView,
}

/// Why [`Sessions::create_session`] or [`Sessions::ensure_idenfy_session`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The `Idempotency-Key` is empty, longer than 200 characters or not visible ASCII.
    #[error("Idempotency-Key must be 1 to 200 visible ASCII characters")]
    InvalidKey,
    /// The key was first used with a different sigDigest or flow.
    #[error("Idempotency-Key was already used for a different request")]
    KeyMismatch,
    /// A request with the same key is still running; retry after the given time.
    #[error("a request with this Idempotency-Key is in progress")]
    InProgress {
        /// How long to wait before retrying, in milliseconds.
        retry_after_ms: u64,
    },
    /// An earlier token call for this key has an unknown outcome (a token may have been
    /// billed); no new one before the given time.
    #[error("an earlier token call for this Idempotency-Key got no answer; retry later")]
    BackingOff {
        /// How long to wait before retrying, in milliseconds.
        retry_after_ms: u64,
    },
    /// Too many token calls for this key had an unknown outcome: an operator must look.
    #[error("{count} token calls for this Idempotency-Key got no answer; giving up")]
    UnknownOutcomes {
        /// How many token calls had an unknown outcome.
        count: u32,
    },
    /// No parent has this id, or the parent belongs to a different sigDigest.
    #[error("session not found")]
    ParentNotFound,
    /// The parent has no iDenfy row yet and is no longer `IN_PROGRESS`.
    #[error("session is not in progress")]
    ParentNotInProgress,
    /// The parent has no sigDigest and the request named none.
    #[error("session has no owner to attach an iDenfy session to")]
    ParentWithoutOwner,
    /// The token call failed.
    #[error(transparent)]
    Idenfy(#[from] IdenfyError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether the intent makes a new parent or links an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    NewParent,
    ExistingParent,
}

enum Begin {
    /// We hold the intent's claim and must finish it.
    Claimed(Box<CreationIntent>),
    /// It was finished before: here is its result.
    Replay(Box<Created>),
}

impl<B: Backend> Sessions<B> {
    /// A new IN_PROGRESS parent with its iDenfy row (or a reused APPROVED row).
    pub async fn create_session(&self, request: CreateRequest) -> Result<Created, CreateError> {
        let key = match &request.idempotency_key {
            Some(key) if valid_key(key) => format!("create:{key}"),
            Some(_) => return Err(CreateError::InvalidKey),
            None => format!("create:auto:{}", Nonce::random().as_str()),
        };
        let now = self.clock().now();
        let intent = self.new_intent(
            key,
            request.sig_digest,
            request.flow,
            ParentId::generate(now),
        );
        match self.begin(intent).await? {
            Begin::Replay(created) => Ok(*created),
            Begin::Claimed(intent) => self.complete(*intent, Target::NewParent).await,
        }
    }

    /// `POST /internal/sessions/{id}/idenfy`: the iDenfy row of a parent created elsewhere,
    /// minted at most once however often (and concurrently) this is called.
    pub async fn ensure_idenfy_session(
        &self,
        raw_parent_id: &str,
        owner: Option<SigDigest>,
    ) -> Result<Created, CreateError> {
        let id = ParentId::parse(raw_parent_id).map_err(|_| CreateError::ParentNotFound)?;
        let parent = self
            .parents()
            .find_any(&id)
            .await?
            .ok_or(CreateError::ParentNotFound)?;
        if let (Some(stored), Some(given)) = (&parent.sig_digest, &owner)
            && !stored.matches(given)
        {
            return Err(CreateError::ParentNotFound);
        }
        if let Some(created) = self.linked(&parent, true).await? {
            return Ok(created);
        }
        if parent.status != ParentStatus::InProgress {
            return Err(CreateError::ParentNotInProgress);
        }
        let sig_digest = parent
            .sig_digest
            .clone()
            .or(owner)
            .ok_or(CreateError::ParentWithoutOwner)?;
        let key = format!("link:{}:{}", parent.flow.as_str(), parent.id);
        let intent = self.new_intent(key, sig_digest, parent.flow, parent.id.clone());
        match self.begin(intent).await? {
            Begin::Replay(created) => Ok(*created),
            Begin::Claimed(intent) => self.complete(*intent, Target::ExistingParent).await,
        }
    }

    fn new_intent(
        &self,
        key: String,
        sig_digest: SigDigest,
        flow: Flow,
        parent_id: ParentId,
    ) -> CreationIntent {
        let now = self.clock().now();
        CreationIntent {
            key,
            sig_digest,
            flow,
            parent_id,
            row_id: RowId::generate(now),
            state: IntentState::Pending,
            claimed_until: after(now, self.settings.claim_ttl),
            claim_id: Nonce::random(),
            minted: None,
            created_at: now,
            unknown_mint_outcomes: 0,
            last_unknown_mint_at: None,
        }
    }

    /// Records the intent, or finds the earlier one with the same key.
    async fn begin(&self, intent: CreationIntent) -> Result<Begin, CreateError> {
        match self.intents().insert(&intent).await {
            Ok(()) => return Ok(Begin::Claimed(Box::new(intent))),
            Err(StoreError::Conflict) => {}
            Err(err) => return Err(err.into()),
        }
        let now = self.clock().now();
        let Some(mut existing) = self.intents().get(&intent.key).await? else {
            return Err(CreateError::InProgress {
                retry_after_ms: 100,
            });
        };
        if !existing.sig_digest.matches(&intent.sig_digest) || existing.flow != intent.flow {
            return Err(CreateError::KeyMismatch);
        }
        // Token calls for this intent whose outcome is unknown: each may have billed a token
        // we never saw, so wait before paying again, and stop at the bound.
        if existing.state == IntentState::Failed && existing.unknown_mint_outcomes > 0 {
            if existing.unknown_mint_outcomes >= self.settings.max_unknown_mint_outcomes {
                return Err(CreateError::UnknownOutcomes {
                    count: existing.unknown_mint_outcomes,
                });
            }
            if existing.claimed_until > now {
                return Err(CreateError::BackingOff {
                    retry_after_ms: u64::try_from(
                        (existing.claimed_until - now).num_milliseconds(),
                    )
                    .unwrap_or(1000)
                    .max(1),
                });
            }
        }
        match existing.state {
            IntentState::Done => {
                let created = self.result_of(&existing).await?;
                Ok(Begin::Replay(Box::new(created)))
            }
            // The first request usually ends within a token call: retry soon (it is then
            // replayed), not when its claim would lapse (up to the claim's whole TTL).
            IntentState::Pending if existing.claimed_until > now => Err(CreateError::InProgress {
                retry_after_ms: u64::try_from((existing.claimed_until - now).num_milliseconds())
                    .unwrap_or(IN_PROGRESS_RETRY_MS)
                    .clamp(1, IN_PROGRESS_RETRY_MS),
            }),
            IntentState::Pending | IntentState::Failed => {
                let claim_id = Nonce::random();
                let until = after(now, self.settings.claim_ttl);
                if self
                    .intents()
                    .reclaim(&existing.key, &claim_id, until, now)
                    .await?
                    .applied()
                {
                    existing.claim_id = claim_id;
                    existing.claimed_until = until;
                    existing.state = IntentState::Pending;
                    Ok(Begin::Claimed(Box::new(existing)))
                } else {
                    Err(CreateError::InProgress {
                        retry_after_ms: 100,
                    })
                }
            }
        }
    }

    /// Reuse or mint, then write the row, then the parent (or its link), then mark done.
    async fn complete(
        &self,
        intent: CreationIntent,
        target: Target,
    ) -> Result<Created, CreateError> {
        let now = self.clock().now();
        let token = match intent.minted.clone() {
            // An earlier attempt paid for this token: use it, never mint again.
            Some(token) => token,
            None => {
                if target == Target::NewParent
                    && let Some(reusable) = self
                        .rows()
                        .find_reusable(
                            &intent.sig_digest,
                            intent.flow,
                            before(now, self.settings.reuse_window),
                        )
                        .await?
                {
                    self.insert_parent(&intent, &reusable.id).await?;
                    let _ = self
                        .intents()
                        .finish(&intent.key, &intent.claim_id, IntentState::Done)
                        .await?;
                    info!(session = %intent.parent_id, row = %reusable.id, "reused a recent approved iDenfy session");
                    return Ok(self.created(
                        &intent.parent_id,
                        intent.flow,
                        &reusable,
                        true,
                        false,
                    ));
                }
                self.mint_for(&intent).await?
            }
        };
        let row = IdenfyRow::new(
            intent.row_id.clone(),
            intent.sig_digest.clone(),
            intent.flow,
            intent.parent_id.clone(),
            &token,
            now,
        );
        match self.rows().insert(&row).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(err) => return Err(err.into()),
        }
        match target {
            Target::NewParent => self.insert_parent(&intent, &row.id).await?,
            Target::ExistingParent => {
                if !self
                    .parents()
                    .link_row(intent.flow, &intent.parent_id, &row.id)
                    .await?
                    .applied()
                {
                    // Linked elsewhere meanwhile (e.g. by id-server): that link wins.
                    warn!(session = %intent.parent_id, row = %row.id, "parent was linked to another row meanwhile");
                    let _ = self
                        .intents()
                        .finish(&intent.key, &intent.claim_id, IntentState::Done)
                        .await?;
                    return self.result_of(&intent).await;
                }
            }
        }
        let _ = self
            .intents()
            .finish(&intent.key, &intent.claim_id, IntentState::Done)
            .await?;
        info!(session = %intent.parent_id, row = %row.id, scan_ref = %row.scan_ref, "created an iDenfy session");
        Ok(self.created(&intent.parent_id, intent.flow, &row, false, false))
    }

    async fn mint_for(&self, intent: &CreationIntent) -> Result<MintedToken, CreateError> {
        // A token this process minted for this intent and could not record: use it.
        if let Some(entry) = self.journaled_for_intent(&intent.key) {
            let token = entry.token();
            self.record_minted(intent, &token).await?;
            self.settle_journaled(&entry);
            info!(session = %intent.parent_id, scan_ref = %token.scan_ref, "used a journaled token for a retried creation");
            return Ok(token);
        }
        metrics::counter!("idenfy_mints_total", "cause" => "creation").increment(1);
        match self.idenfy().mint(&intent.parent_id).await {
            Ok(token) => {
                self.record_minted(intent, &token).await?;
                Ok(token)
            }
            Err(err) => {
                metrics::counter!("idenfy_mint_failures_total", "class" => err.class().as_str())
                    .increment(1);
                if err.kind.outcome_unknown() {
                    metrics::counter!("idenfy_mint_unknown_outcomes_total", "cause" => "creation")
                        .increment(1);
                    warn!(session = %intent.parent_id, attempt = intent.unknown_mint_outcomes + 1, error = %err, "the outcome of a token call for a new session is unknown (a token may have been billed); its retries wait");
                    let now = self.clock().now();
                    let retry_at = after(now, self.settings.unknown_outcome_backoff);
                    let _ = self
                        .intents()
                        .record_unknown_mint(&intent.key, &intent.claim_id, retry_at, now)
                        .await?;
                    return Err(err.into());
                }
                if err.class() == crate::ErrorClass::Transient {
                    warn!(session = %intent.parent_id, class = err.class().as_str(), error = %err, "minting a token for a new session failed; nothing was written");
                } else {
                    error!(session = %intent.parent_id, class = err.class().as_str(), error = %err, "minting a token for a new session failed; nothing was written; operator action needed");
                }
                let _ = self
                    .intents()
                    .finish(&intent.key, &intent.claim_id, IntentState::Failed)
                    .await?;
                Err(err.into())
            }
        }
    }

    /// Saves a paid token in its intent before anything else: retried on store faults while
    /// the intent's claim is ours, then journaled (never dropped).
    async fn record_minted(
        &self,
        intent: &CreationIntent,
        token: &MintedToken,
    ) -> Result<(), CreateError> {
        let until = intent
            .claimed_until
            .min(after(self.clock().now(), self.settings.persist_retry));
        let recorded = self
            .retrying_store(
                until,
                &intent.parent_id,
                "saving a minted token in its creation intent",
                || {
                    self.intents()
                        .record_mint(&intent.key, &intent.claim_id, token)
                },
            )
            .await;
        match recorded {
            Ok(write) => {
                if !write.applied() {
                    warn!(session = %intent.parent_id, "creation claim expired while minting");
                }
                Ok(())
            }
            Err(err) => {
                let target = MintTarget::Creation {
                    intent_key: intent.key.clone(),
                    claim_id: intent.claim_id.clone(),
                };
                self.journal_mint(&intent.parent_id, target, token, &err);
                Err(err.into())
            }
        }
    }

    /// A token this process journaled for the creation intent `key`, if any.
    fn journaled_for_intent(&self, key: &str) -> Option<JournaledMint> {
        let journal = self.journal.as_ref()?;
        journal.pending().into_iter().find(|entry| {
            entry.environment == self.settings.environment
                && matches!(&entry.target, MintTarget::Creation { intent_key, .. } if intent_key == key)
        })
    }

    /// Replay of a journaled creation token: written into its intent (under the journaled
    /// claim), so the client's retry finishes with it. `Ok(false)` when the intent moved
    /// on (reclaimed or finished): the token is then an orphan, logged at ERROR.
    pub(crate) async fn attach_journaled_creation(
        &self,
        entry: &JournaledMint,
    ) -> Result<bool, StoreError> {
        let MintTarget::Creation {
            intent_key,
            claim_id,
        } = &entry.target
        else {
            return Ok(false);
        };
        let write = self
            .intents()
            .record_mint(intent_key, claim_id, &entry.token())
            .await?;
        if write.applied() {
            info!(session = %entry.parent_id, scan_ref = %entry.scan_ref, "attached a journaled token to its creation intent");
            return Ok(true);
        }
        metrics::counter!("idenfy_orphaned_mints_total").increment(1);
        error!(session = %entry.parent_id, intent = intent_key.as_str(), scan_ref = %entry.scan_ref, "a journaled creation token's intent moved on: orphaned mint (billed, unused)");
        Ok(false)
    }

    async fn insert_parent(&self, intent: &CreationIntent, row: &RowId) -> Result<(), StoreError> {
        let parent = Parent {
            id: intent.parent_id.clone(),
            flow: intent.flow,
            sig_digest: Some(intent.sig_digest.clone()),
            status: ParentStatus::InProgress,
            idenfy_session_id: Some(row.clone()),
            failure_reason: None,
            created_at: Some(self.clock().now()),
        };
        match self.parents().insert(&parent).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The result of a finished intent, read back from the stores.
    async fn result_of(&self, intent: &CreationIntent) -> Result<Created, CreateError> {
        let parent = self
            .parents()
            .get(intent.flow, &intent.parent_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                id: intent.key.clone(),
                reason: "finished intent without parent".into(),
            })?;
        self.linked(&parent, true).await?.ok_or_else(|| {
            CreateError::Store(StoreError::Corrupt {
                id: intent.key.clone(),
                reason: "finished intent without row".into(),
            })
        })
    }

    /// The parent's linked row, if it exists.
    async fn linked(&self, parent: &Parent, replayed: bool) -> Result<Option<Created>, StoreError> {
        let Some(row_id) = &parent.idenfy_session_id else {
            return Ok(None);
        };
        let Some(row) = self.rows().get(row_id).await? else {
            return Ok(None);
        };
        Ok(Some(self.created(
            &parent.id,
            parent.flow,
            &row,
            false,
            replayed,
        )))
    }

    fn created(
        &self,
        parent: &ParentId,
        flow: Flow,
        row: &IdenfyRow,
        reused: bool,
        replayed: bool,
    ) -> Created {
        Created {
            session_id: parent.clone(),
            idenfy_session_id: row.id.clone(),
            flow,
            reused,
            replayed,
            idenfy: SessionView::current(row, &self.settings),
        }
    }
}

fn valid_key(key: &str) -> bool {
    (1..=200).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}
