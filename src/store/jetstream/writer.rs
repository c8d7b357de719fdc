//! The JetStream log's writer: groups of appends, each command's events published as one
//! atomic batch with the expected last sequence (global and per stream), acknowledged once the
//! server has stored them.

use super::*;

/// A group of appends planned on the index, ready to publish as one batch.
pub(super) struct Plan {
    pub(super) base: u64,
    pub(super) jobs: Vec<Job>,
    pub(super) events: Vec<RecordedEvent>,
    /// Per event: its content hash, and the expected last subject sequence for the first event
    /// of a command whose subject does not appear earlier in the batch.
    pub(super) meta: Vec<([u8; 32], Option<u64>)>,
}

pub(super) enum PublishError {
    /// The head moved: someone else appended. Catch up and plan again.
    WrongLast,
    /// The outcome is unknown (timeout, outage, leader change).
    Unknown(String),
    /// The server refused the batch for a reason retrying cannot fix.
    Refused(String),
}

pub(super) struct Writer {
    pub(super) client: Client,
    pub(super) js: jetstream::Context,
    pub(super) stream: stream::Stream,
    pub(super) shared: Arc<Shared>,
    pub(super) clock: Arc<dyn Clock>,
    /// A group of single-event commands is one atomic batch (`publish=batch`), rather than
    /// one publish per event (`publish=each`).
    pub(super) batch: bool,
    /// The subjects' prefix of the log's stream (`subject_prefix`).
    pub(super) prefix: Arc<str>,
}

impl Writer {
    pub(super) async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Job>) {
        let mut carry: Vec<Job> = Vec::new();
        loop {
            if carry.is_empty() {
                match rx.recv().await {
                    Some(j) => carry.push(j),
                    None => return,
                }
            }
            let mut events: usize = carry.iter().map(|j| j.request.events.len()).sum();
            let mut group = std::mem::take(&mut carry);
            while events < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) if events + j.request.events.len() <= MAX_BATCH => {
                        events += j.request.events.len();
                        group.push(j);
                    }
                    Ok(j) => {
                        carry.push(j);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let deferred = self.commit(group).await;
            carry.splice(0..0, deferred);
        }
    }

    /// Commits a group; returns the jobs left for the next group (a command id seen twice).
    pub(super) async fn commit(&self, mut jobs: Vec<Job>) -> Vec<Job> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut backoff = Duration::from_millis(50);
        // Command ids this group may have committed in an attempt whose outcome is unknown.
        let mut maybe_ours: HashSet<Uuid> = HashSet::new();
        let mut deferred = Vec::new();
        loop {
            let plan = self.plan(jobs, &maybe_ours, &mut deferred);
            if plan.jobs.is_empty() {
                return deferred;
            }
            // A group is one atomic batch (NATS 2.12): the server stores it whole or not at
            // all, with one write (and, with `sync_interval: always`, one fsync). A lone event,
            // or single-event commands under `publish=each`, go one publish each, pipelined; a
            // group holding a multi-event command is always a batch.
            let single = plan.events.len() == plan.jobs.len();
            let (committed, published) = if plan.events.len() == 1 || (single && !self.batch) {
                self.publish_each(&plan).await
            } else {
                match self.publish(&plan).await {
                    Ok(()) => (plan.events.len(), Ok(())),
                    Err(e) => (0, Err(e)),
                }
            };
            // The committed prefix is in the log: index it and answer its commands.
            let mut jobs_left = Vec::new();
            if committed > 0 {
                let mut index = self.shared.index();
                let mut failed = None;
                for (e, (h, _)) in plan.events[..committed].iter().zip(&plan.meta) {
                    let h = crate::envelope::cloudevents::CommandHash {
                        hash: *h,
                        version: crate::store::CONTENT_HASH_VERSION,
                    };
                    if let Err(err) = index.apply(&e.as_ref(), h) {
                        failed = Some(err.to_string());
                        break;
                    }
                }
                for job in plan.jobs {
                    let id = job.request.command.command_id;
                    match (&failed, index.record(id)) {
                        (Some(e), _) => {
                            let _ = job.reply.send(Err(StoreError::Corrupt(e.clone().into())));
                        }
                        (None, Some(rec)) if rec.last_position <= plan.base + committed as u64 => {
                            let _ = job.reply.send(Ok(AppendResult::Committed(rec)));
                        }
                        (None, _) => jobs_left.push(job),
                    }
                }
                drop(index);
                self.shared.moved.notify_all();
            } else {
                jobs_left = plan.jobs;
            }
            let plan = Plan {
                jobs: jobs_left,
                ..plan
            };
            match published {
                Ok(()) => {
                    for job in plan.jobs {
                        let _ = job.reply.send(Err(StoreError::Corrupt(
                            "a committed command is missing from the index".into(),
                        )));
                    }
                    return deferred;
                }
                Err(PublishError::WrongLast) => {
                    if let Err(e) = catch_up(&self.stream, &self.shared).await {
                        tracing::debug!(error = %e, "catch-up after a moved head failed");
                    }
                    jobs = plan.jobs;
                }
                Err(PublishError::Refused(why)) if plan.jobs.len() > 1 => {
                    // One command may be at fault (too large): the others go on alone.
                    tracing::debug!(error = %why, "batch refused; committing its commands one by one");
                    let mut it = plan.jobs.into_iter();
                    jobs = vec![it.next().expect("non-empty")];
                    deferred.extend(it);
                }
                Err(PublishError::Refused(why)) => {
                    for job in plan.jobs {
                        let _ = job.reply.send(Err(StoreError::Invalid(
                            format!("NATS refused the append: {why}").into(),
                        )));
                    }
                    return deferred;
                }
                Err(PublishError::Unknown(why)) => {
                    maybe_ours.extend(plan.jobs.iter().map(|j| j.request.command.command_id));
                    if Instant::now() >= deadline {
                        for job in plan.jobs {
                            // Its outcome is still unknown: say so; a resubmission is safe
                            // (idempotent by command id).
                            let _ = job.reply.send(Err(StoreError::Unavailable(
                                format!(
                                    "NATS did not confirm the append within {} s ({why}); \
                                 resubmit the same command: it is recorded at most once",
                                    RETRY_FOR.as_secs()
                                )
                                .into(),
                            )));
                        }
                        return deferred;
                    }
                    tracing::debug!(error = %why, "append outcome unknown; catching up");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    if let Err(e) = catch_up(&self.stream, &self.shared).await {
                        tracing::debug!(error = %e, "catch-up failed");
                    }
                    jobs = plan.jobs;
                }
            }
        }
    }

    /// Checks each job against the index (duplicates and conflicts are answered here) and
    /// builds the envelopes of the others, chained from the head.
    pub(super) fn plan(
        &self,
        jobs: Vec<Job>,
        maybe_ours: &HashSet<Uuid>,
        deferred: &mut Vec<Job>,
    ) -> Plan {
        let index = self.shared.index();
        let now = format_recorded_at(self.clock.now());
        let recorded_at = if now > index.head_recorded_at {
            now
        } else {
            index.head_recorded_at.clone()
        };
        let mut plan = Plan {
            base: index.head,
            jobs: Vec::with_capacity(jobs.len()),
            events: Vec::new(),
            meta: Vec::new(),
        };
        let mut prev = index.head_hash;
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut ids: HashSet<Uuid> = HashSet::new();
        let mut subjects: HashSet<String> = HashSet::new();
        for job in jobs {
            let req = &job.request;
            let id = req.command.command_id;
            if let Some(rec) = index.record(id) {
                let r = if maybe_ours.contains(&id) {
                    AppendResult::Committed(rec)
                } else {
                    AppendResult::Duplicate(rec)
                };
                let _ = job.reply.send(Ok(r));
                continue;
            }
            if !ids.insert(id) {
                deferred.push(job);
                continue;
            }
            let positions = index.positions(&req.stream_id);
            let current = *versions
                .get(&req.stream_id)
                .unwrap_or(&(positions.len() as u64));
            if let ExpectedVersion::Exact(v) = req.expected {
                if v != current {
                    let _ = job.reply.send(Err(StoreError::Conflict {
                        stream: req.stream_id.clone(),
                        expected: v,
                        actual: current,
                    }));
                    continue;
                }
            }
            let subject_check = if subjects.insert(req.stream_id.clone()) {
                Some(positions.last().copied().unwrap_or(0))
            } else {
                None
            };
            versions.insert(req.stream_id.clone(), current + req.events.len() as u64);
            let actor = req.command.actor.to_json();
            for (i, ev) in req.events.iter().enumerate() {
                let mut r = RecordedEvent {
                    position: plan.base + plan.events.len() as u64 + 1,
                    event_id: Uuid::now_v7(),
                    stream_id: req.stream_id.clone(),
                    stream_version: current + 1 + i as u64,
                    event_type: ev.event_type.clone(),
                    schema_version: ev.schema_version,
                    occurred_at: format_occurred_at(ev.occurred_at),
                    recorded_at: recorded_at.clone(),
                    command_id: id,
                    correlation_id: req.command.correlation_id.clone(),
                    actor: actor.clone(),
                    data: ev.data.clone(),
                    prev_hash: prev,
                    hash: GENESIS_HASH,
                };
                r.hash = chain_hash(&prev, &r.as_ref());
                prev = r.hash;
                plan.events.push(r);
                plan.meta.push((
                    req.command.content_hash,
                    if i == 0 { subject_check } else { None },
                ));
            }
            plan.jobs.push(job);
        }
        plan
    }

    /// Publishes each event as its own message, all in flight at once. Each carries
    /// `Nats-Expected-Last-Sequence` = its position − 1 and, after the first,
    /// `Nats-Expected-Last-Msg-Id` = the previous event's id: if one is refused, every later
    /// one is refused too (its predecessor is not in the log), so the chain never skips.
    /// Returns how many, from the first, are committed.
    pub(super) async fn publish_each(&self, plan: &Plan) -> (usize, Result<(), PublishError>) {
        let mut acks = Vec::with_capacity(plan.events.len());
        let mut send_error = None;
        let mut prev_id: Option<String> = None;
        for (e, (content_hash, subject_check)) in plan.events.iter().zip(&plan.meta) {
            let id = e.event_id.to_string();
            let mut h = HeaderMap::new();
            h.insert("Ledger-Position", e.position.to_string().as_str());
            h.insert("Ledger-Command-Hash", hex::encode(content_hash).as_str());
            h.insert("Ledger-Command-Hash-Version", "2");
            h.insert("Content-Type", crate::envelope::cloudevents::CONTENT_TYPE);
            h.insert("Nats-Msg-Id", id.as_str());
            h.insert(
                "Nats-Expected-Last-Sequence",
                (e.position - 1).to_string().as_str(),
            );
            if let Some(prev) = &prev_id {
                h.insert("Nats-Expected-Last-Msg-Id", prev.as_str());
            }
            if let Some(s) = subject_check {
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    s.to_string().as_str(),
                );
            }
            let payload: bytes::Bytes = encode(&e.as_ref(), SOURCE).into();
            let message = jetstream::message::PublishMessage::build()
                .headers(h)
                .payload(payload);
            match self
                .js
                .send_publish(log_subject_in(&self.prefix, &e.stream_id), message)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    send_error = Some(classify(err.kind(), err.to_string()));
                    break;
                }
            }
            prev_id = Some(id);
        }
        let mut committed = 0;
        let mut first_error = None;
        for (i, ack) in acks.into_iter().enumerate() {
            let expected = plan.events[i].position;
            match ack.await {
                Ok(a) if first_error.is_none() && a.sequence == expected && !a.duplicate => {
                    committed += 1
                }
                Ok(a) if first_error.is_none() => {
                    first_error = Some(PublishError::Unknown(format!(
                        "acknowledged sequence {} (duplicate: {}), expected {expected}",
                        a.sequence, a.duplicate
                    )))
                }
                Ok(a) => {
                    // Cannot happen (its predecessor check failed); the catch-up that follows
                    // verifies the chain and stops on a break.
                    tracing::error!(
                        sequence = a.sequence,
                        "a publish after a refused one was stored"
                    );
                }
                Err(err) if first_error.is_none() => {
                    first_error = Some(classify(err.kind(), err.to_string()))
                }
                Err(_) => {}
            }
        }
        match first_error.or(send_error) {
            None => (committed, Ok(())),
            Some(e) => (committed, Err(e)),
        }
    }

    pub(super) async fn publish(&self, plan: &Plan) -> Result<(), PublishError> {
        let n = plan.events.len();
        let batch_id = Uuid::now_v7().simple().to_string();
        let mut reply = None;
        for (i, (e, (content_hash, subject_check))) in
            plan.events.iter().zip(&plan.meta).enumerate()
        {
            let mut h = HeaderMap::new();
            h.insert("Ledger-Position", e.position.to_string().as_str());
            h.insert("Ledger-Command-Hash", hex::encode(content_hash).as_str());
            h.insert("Ledger-Command-Hash-Version", "2");
            h.insert("Content-Type", crate::envelope::cloudevents::CONTENT_TYPE);
            if i == 0 {
                h.insert(
                    "Nats-Expected-Last-Sequence",
                    plan.base.to_string().as_str(),
                );
            }
            if let Some(s) = subject_check {
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    s.to_string().as_str(),
                );
            }
            if n > 1 {
                h.insert("Nats-Batch-Id", batch_id.as_str());
                h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
                if i + 1 == n {
                    h.insert("Nats-Batch-Commit", "1");
                }
            }
            let payload: bytes::Bytes = encode(&e.as_ref(), SOURCE).into();
            let subject = log_subject_in(&self.prefix, &e.stream_id);
            if i + 1 == n {
                // The last message commits the batch: the server answers with the publish
                // acknowledgement, or the error of whichever message failed a check. The
                // others go without a reply (no round trip each).
                let r = self
                    .client
                    .send_request(
                        subject,
                        async_nats::Request::new()
                            .headers(h)
                            .payload(payload)
                            .timeout(Some(Duration::from_secs(5))),
                    )
                    .await
                    .map_err(|e| PublishError::Unknown(e.to_string()))?;
                check_reply(&r.payload, i + 1 == n)?;
                reply = Some(r);
            } else {
                self.client
                    .publish_with_headers(subject, h, payload)
                    .await
                    .map_err(|e| PublishError::Unknown(e.to_string()))?;
            }
        }
        let ack: serde_json::Value = reply
            .as_ref()
            .and_then(|r| serde_json::from_slice(&r.payload).ok())
            .ok_or_else(|| PublishError::Unknown("no acknowledgement".into()))?;
        let seq = ack.get("seq").and_then(|s| s.as_u64()).unwrap_or(0);
        if seq != plan.base + n as u64 {
            return Err(PublishError::Unknown(format!(
                "acknowledged sequence {seq}, expected {}",
                plan.base + n as u64
            )));
        }
        Ok(())
    }
}

pub(super) fn classify(kind: jetstream::context::PublishErrorKind, why: String) -> PublishError {
    use jetstream::context::PublishErrorKind as K;
    match kind {
        K::WrongLastSequence | K::WrongLastMessageId => PublishError::WrongLast,
        K::MaxPayloadExceeded => PublishError::Refused(why),
        _ => PublishError::Unknown(why),
    }
}

/// Reads a server reply to a batch message: empty (batch opened), a publish acknowledgement,
/// or an error.
pub(super) fn check_reply(payload: &[u8], last: bool) -> Result<(), PublishError> {
    if payload.is_empty() {
        return if last {
            Err(PublishError::Unknown("empty acknowledgement".into()))
        } else {
            Ok(())
        };
    }
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|_| PublishError::Unknown("unreadable acknowledgement".into()))?;
    let Some(err) = v.get("error") else {
        return Ok(());
    };
    let code = err.get("code").and_then(|c| c.as_u64()).unwrap_or(0);
    let err_code = err.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0);
    let description = err
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    match (code, err_code) {
        // wrong last sequence (global or per subject)
        (_, 10071) => Err(PublishError::WrongLast),
        (503, _) | (408, _) | (_, 10176) => Err(PublishError::Unknown(description)),
        _ => Err(PublishError::Refused(format!(
            "{description} (error {err_code})"
        ))),
    }
}
