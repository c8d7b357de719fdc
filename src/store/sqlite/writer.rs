//! The SQLite writer: one thread takes append jobs in groups (group commit), checks each
//! command (idempotency, expected version), inserts the group in one transaction, and hands the
//! WAL to the fsync thread; commands are acknowledged once their group is durable.

use super::*;

/// What became of one append inside a group.
pub(super) enum Step {
    Done(Result<AppendResult, StoreError>),
    /// An insert hit a constraint: the group's transaction must be rolled back.
    Constraint,
    /// Anything else: the whole group fails.
    Failed(StoreError),
}

/// A committed group on its way to the fsync thread.
pub(super) struct Synced {
    replies: Vec<(Reply, Result<AppendResult, StoreError>)>,
    head: u64,
}

impl Synced {
    pub(super) fn fail(self, why: &str) {
        for (reply, _) in self.replies {
            reply.send(Err(StoreError::Unavailable(why.to_string().into())));
        }
    }
}

/// Makes committed groups durable: one fsync of the WAL covers every group committed before
/// it; only then are their appends acknowledged and subscribers woken.
pub(super) fn sync_loop(rx: mpsc::Receiver<Synced>, wal: PathBuf, notify: Option<Arc<Notify>>) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        let synced = (|| -> std::io::Result<()> {
            if file.is_none() {
                file = Some(std::fs::OpenOptions::new().read(true).open(&wal)?);
            }
            file.as_ref().expect("opened").sync_data()
        })();
        if let Err(e) = &synced {
            file = None;
            tracing::error!(error = %e, wal = %wal.display(), "fsync of the WAL failed; appends are refused");
        }
        let head = groups.last().map(|g| g.head).unwrap_or(0);
        for g in groups {
            match &synced {
                Ok(()) => {
                    for (reply, result) in g.replies {
                        reply.send(result);
                    }
                }
                Err(e) => g.fail(&format!("the commit could not be made durable (fsync: {e}); retry: a command already recorded is reported as a duplicate")),
            }
        }
        if synced.is_ok() {
            if let Some(n) = &notify {
                n.durable
                    .fetch_max(head, std::sync::atomic::Ordering::SeqCst);
                *n.head.lock().unwrap_or_else(|e| e.into_inner()) = head;
                n.changed.notify_all();
            }
        }
    }
}

/// The single writer: takes every queued append into one transaction (group commit).
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) wal_path: PathBuf,
    pub(super) clock: Arc<dyn Clock>,
    /// Position, hash and commit time of the last event.
    pub(super) head: (u64, [u8; 32], String),
    pub(super) versions: HashMap<String, u64>,
    pub(super) notify: Option<Arc<Notify>>,
    /// The person index in memory: the entries of each committed group are added to it.
    pub(super) persons: Option<Arc<super::persons::Memo>>,
    /// The Merkle tree's edge at the head, and the nodes the open transaction completed.
    pub(super) tree: Frontier,
    pub(super) new_nodes: Vec<(NodeId, Hash)>,
    /// Why the tree cannot be kept (a damaged log): appends are refused, reads go on.
    pub(super) tree_error: Option<String>,
}

pub(super) const MAX_BATCH: usize = 512;
pub(super) const LINGER: Duration = Duration::from_micros(300);
pub(super) const MAX_CACHED_STREAMS: usize = 200_000;

impl Writer {
    pub(super) fn new(
        conn: Connection,
        clock: Arc<dyn Clock>,
        wal_path: PathBuf,
    ) -> Result<Writer, StoreError> {
        // The commit itself does not fsync; the fsync thread does, before acknowledging
        // (SQLite still syncs around checkpoints).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Fewer, larger checkpoints: pages written many times are copied to the file once.
        conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
        // No stale copy of an erased person's index entry in rebalanced pages (`persons`).
        conn.pragma_update(None, "secure_delete", true)?;
        let mut w = Writer {
            conn,
            wal_path,
            clock,
            head: (0, GENESIS_HASH, String::new()),
            versions: HashMap::new(),
            notify: None,
            persons: None,
            tree: Frontier::new(),
            new_nodes: Vec::new(),
            tree_error: None,
        };
        w.head = w.read_head()?;
        // A log the tree cannot be built for (damaged) still opens, so that `audit verify`
        // can say what is wrong; nothing can be appended to it.
        match super::tree::catch_up(&w.conn, w.head.0)
            .and_then(|()| super::tree::frontier_at(&w.conn, w.head.0))
        {
            Ok(t) => w.tree = t,
            Err(e) => {
                tracing::error!(error = %e, "the log's Merkle tree cannot be built; appends are refused: run `campaign-ledger audit verify`");
                w.tree_error = Some(e.to_string());
            }
        }
        Ok(w)
    }

    pub(super) fn read_head(&self) -> Result<(u64, [u8; 32], String), StoreError> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1",
            )?
            .query_row([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    hash_col(r, 1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()
            .map_err(corrupt)?;
        Ok(head.unwrap_or((0, GENESIS_HASH, String::new())))
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Job>) {
        // Pipelined group commit: the writer commits group k+1 while the syncer makes group k
        // durable; appends are acknowledged only after the fsync that covers them.
        // Bounded: while one committed group waits for the fsync, the writer does not commit
        // another but lets appends queue up, so groups grow to what one fsync can carry.
        let (sync_tx, sync_rx) = mpsc::sync_channel::<Synced>(1);
        let wal = self.wal_path.clone();
        let notify = self.notify.clone();
        let syncer = std::thread::Builder::new()
            .name("ledger-fsync".into())
            .spawn(move || sync_loop(sync_rx, wal, notify))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the fsync thread: every append is refused");
            })
            .ok();
        // Adaptive group size: when the last group carried many appends, many clients are
        // cycling; wait a little (at most LINGER) for most of them before committing, so one
        // commit and one fsync carry them all. A lone writer never waits.
        let mut last_group = 1usize;
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let target = (last_group * 3 / 4).min(MAX_BATCH);
            if jobs.len() < target {
                let deadline = std::time::Instant::now() + LINGER;
                while jobs.len() < target {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
            }
            last_group = jobs.len();
            // The commands of the group, by id: the writer thread's logs name them, as the
            // request and command spans do on the caller's side.
            let span = tracing::debug_span!(
                "group_commit",
                appends = jobs.len(),
                commands = tracing::field::Empty
            );
            if !span.is_disabled() {
                let ids: Vec<String> = jobs
                    .iter()
                    .map(|j| j.request.command.command_id.to_string())
                    .collect();
                span.record("commands", ids.join(",").as_str());
            }
            let _span = span.entered();
            let results = self.commit_batch(&jobs);
            let replies: Vec<(Reply, Result<AppendResult, StoreError>)> =
                jobs.into_iter().map(|j| j.reply).zip(results).collect();
            let group = Synced {
                replies,
                head: self.head.0,
            };
            match &syncer {
                Some(_) => {
                    if let Err(mpsc::SendError(group)) = sync_tx.send(group) {
                        group.fail("the fsync thread stopped");
                    }
                }
                None => group.fail("the fsync thread could not start"),
            }
        }
        drop(sync_tx);
        if let Some(h) = syncer {
            let _ = h.join();
        }
        // Checkpoint on close so that the file alone holds everything.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    pub(super) fn commit_batch(&mut self, jobs: &[Job]) -> Vec<Result<AppendResult, StoreError>> {
        let mut settled: Vec<Option<Result<AppendResult, StoreError>>> =
            (0..jobs.len()).map(|_| None).collect();
        loop {
            match self.try_commit_batch(jobs, &mut settled) {
                Ok(true) => break,
                Ok(false) => continue, // one append hit a constraint: settled, retry the others
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.versions.clear();
                    if let Ok(h) = self.read_head() {
                        self.head = h;
                    }
                    if let Ok(t) = super::tree::frontier_at(&self.conn, self.head.0) {
                        self.tree = t;
                    }
                    let msg = super::errors::write_failure(&e, &self.wal_path);
                    tracing::error!(error = %msg, "group commit failed; every append in it is refused");
                    for slot in settled.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err(StoreError::Unavailable(msg.clone().into())));
                    }
                    break;
                }
            }
        }
        if let Some(n) = &self.notify {
            let mut c = n.commits.lock().unwrap_or_else(|e| e.into_inner());
            c.0 += 1;
            c.1 += jobs.len() as u64;
        }
        settled
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("not run".into()))))
            .collect()
    }

    /// One transaction over the unsettled appends. Returns `Ok(false)` when an insert hit a
    /// constraint (a concurrent writer took the version, or the command id is known): the
    /// transaction is rolled back, that append is settled, and the caller runs the rest again.
    pub(super) fn try_commit_batch(
        &mut self,
        jobs: &[Job],
        settled: &mut [Option<Result<AppendResult, StoreError>>],
    ) -> Result<bool, StoreError> {
        if let Some(why) = &self.tree_error {
            return Err(StoreError::Corrupt(
                format!("the log's Merkle tree cannot be kept ({why}); run `campaign-ledger audit verify`").into(),
            ));
        }
        self.conn
            .prepare_cached("BEGIN IMMEDIATE")?
            .execute([])
            .map_err(sqlite_time)?;
        let on_disk = self.read_head()?;
        if on_disk.0 != self.head.0 || on_disk.1 != self.head.1 {
            // Another process wrote: our version cache may be stale, and the tree's edge moved.
            self.versions.clear();
            self.tree = super::tree::frontier_at(&self.conn, on_disk.0)?;
            self.head = on_disk;
        }
        if self.versions.len() > MAX_CACHED_STREAMS {
            self.versions.clear();
        }
        let saved_head = self.head.clone();
        let saved_tree = self.tree.clone();
        self.new_nodes.clear();
        let now = format_recorded_at(self.clock.now());
        let recorded_at = if now > self.head.2 {
            now
        } else {
            self.head.2.clone()
        };
        let mut tentative: Vec<(usize, Result<AppendResult, StoreError>)> =
            Vec::with_capacity(jobs.len());
        let mut batch_ids: HashMap<Uuid, CommandRecord> = HashMap::new();
        let mut touched: HashSet<String> = HashSet::new();
        for (i, job) in jobs.iter().enumerate() {
            if settled[i].is_some() {
                continue;
            }
            match self.append_one(&job.request, &recorded_at, &mut batch_ids, &mut touched) {
                Step::Done(r) => tentative.push((i, r)),
                Step::Constraint => {
                    self.conn.prepare_cached("ROLLBACK")?.execute([])?;
                    self.head = saved_head;
                    self.tree = saved_tree;
                    for s in &touched {
                        self.versions.remove(s);
                    }
                    self.versions.remove(&job.request.stream_id);
                    settled[i] = Some(self.explain_constraint(&job.request));
                    return Ok(false);
                }
                Step::Failed(e) => return Err(e),
            }
        }
        super::tree::insert_nodes(&self.conn, &self.new_nodes)?;
        if let Err(e) = self.conn.prepare_cached("COMMIT")?.execute([]) {
            self.head = saved_head;
            self.tree = saved_tree;
            for s in touched {
                self.versions.remove(&s);
            }
            return Err(sqlite_time(e));
        }
        if let Some(m) = &self.persons {
            for (i, r) in &tentative {
                if let (Some(link), Ok(AppendResult::Committed(_))) = (&jobs[*i].request.person, r)
                {
                    m.put(&link.lookup, &link.person_id);
                }
            }
        }
        for (i, r) in tentative {
            settled[i] = Some(r);
        }
        Ok(true)
    }

    /// After a constraint failure (outside any transaction): a known command id is a
    /// duplicate, a new person the index holds already is taken, anything else a conflict on
    /// the stream.
    pub(super) fn explain_constraint(
        &mut self,
        req: &AppendRequest,
    ) -> Result<AppendResult, StoreError> {
        if let Some(rec) = self.command_record(req.command.command_id)? {
            return Ok(AppendResult::Duplicate(rec));
        }
        if let Some(link) = &req.person {
            if let Some(theirs) = super::persons::find(&self.conn, &link.lookup)? {
                // Recorded by another process since this one loaded the index: remember it,
                // so that the caller's next lookup finds it.
                if let Some(m) = &self.persons {
                    m.put(&link.lookup, &theirs);
                }
                return Err(StoreError::PersonTaken);
            }
        }
        let actual = self.stream_version(&req.stream_id)?;
        Err(StoreError::Conflict {
            stream: req.stream_id.clone(),
            expected: match req.expected {
                ExpectedVersion::Exact(v) => v,
                ExpectedVersion::Any => actual,
            },
            actual,
        })
    }

    pub(super) fn stream_version(&mut self, stream: &str) -> Result<u64, StoreError> {
        if let Some(v) = self.versions.get(stream) {
            return Ok(*v);
        }
        let v: i64 = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?1",
            )?
            .query_row([stream], |r| r.get(0))?;
        self.versions.insert(stream.to_string(), v as u64);
        Ok(v as u64)
    }

    pub(super) fn append_one(
        &mut self,
        req: &AppendRequest,
        recorded_at: &str,
        batch_ids: &mut HashMap<Uuid, CommandRecord>,
        touched: &mut HashSet<String>,
    ) -> Step {
        let id = req.command.command_id;
        if let Some(rec) = batch_ids.get(&id) {
            return Step::Done(Ok(AppendResult::Duplicate(rec.clone())));
        }
        // A new stream needs no lookup: the unique (stream, version) index refuses version 1
        // if the stream exists after all. A known id is caught by the commands primary key.
        let current = match (self.versions.get(&req.stream_id), req.expected) {
            (Some(v), _) => *v,
            (None, ExpectedVersion::Exact(0)) => 0,
            _ => match self.stream_version(&req.stream_id) {
                Ok(v) => v,
                Err(e) => return Step::Failed(e),
            },
        };
        if let ExpectedVersion::Exact(expected) = req.expected {
            if expected != current {
                return Step::Done(Err(StoreError::Conflict {
                    stream: req.stream_id.clone(),
                    expected,
                    actual: current,
                }));
            }
        }
        match self.insert_events(req, current, recorded_at) {
            Ok(rec) => {
                self.versions
                    .insert(req.stream_id.clone(), current + req.events.len() as u64);
                touched.insert(req.stream_id.clone());
                batch_ids.insert(id, rec.clone());
                Step::Done(Ok(AppendResult::Committed(rec)))
            }
            Err(StoreError::Backend { source, .. })
                if source.downcast_ref::<rusqlite::Error>().is_some_and(|e| {
                    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
                }) =>
            {
                Step::Constraint
            }
            Err(e) => Step::Failed(e),
        }
    }

    pub(super) fn command_record(&self, id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT command_id, content_hash, stream_id, first_position, last_position, recorded_at, hash_version \
                 FROM commands WHERE command_id = ?1",
            )?
            .query_row([id.to_string()], command_from_row)
            .optional()
            .map_err(corrupt)
    }

    pub(super) fn insert_events(
        &mut self,
        req: &AppendRequest,
        current: u64,
        recorded_at: &str,
    ) -> Result<CommandRecord, StoreError> {
        let actor = req.command.actor.to_json();
        let first_position = self.head.0 + 1;
        let command_id = req.command.command_id;
        let rec = CommandRecord {
            command_id,
            content_hash: req.command.content_hash,
            stream_id: req.stream_id.clone(),
            first_position,
            last_position: self.head.0 + req.events.len() as u64,
            recorded_at: recorded_at.to_string(),
            hash_version: crate::store::CONTENT_HASH_VERSION,
        };
        self.conn
            .prepare_cached(
                "INSERT INTO commands (command_id, content_hash, stream_id, first_position, last_position, recorded_at, hash_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                command_id.to_string(),
                &rec.content_hash[..],
                rec.stream_id,
                rec.first_position as i64,
                rec.last_position as i64,
                rec.recorded_at,
                rec.hash_version
            ])?;
        if let Some(link) = &req.person {
            super::persons::insert(&self.conn, link)?;
        }
        let mut st = self.conn.prepare_cached(&format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?;
        for (i, ev) in req.events.iter().enumerate() {
            let position = self.head.0 + 1;
            let event_id = Uuid::now_v7();
            let occurred_at = format_occurred_at(ev.occurred_at);
            let mut r = EventRef {
                position,
                event_id,
                stream_id: &req.stream_id,
                stream_version: current + 1 + i as u64,
                event_type: &ev.event_type,
                schema_version: ev.schema_version,
                occurred_at: &occurred_at,
                recorded_at,
                command_id,
                correlation_id: req.command.correlation_id.as_deref(),
                actor: &actor,
                data: &ev.data,
                prev_hash: self.head.1,
                hash: GENESIS_HASH,
            };
            r.hash = chain_hash(&self.head.1, &r);
            let nodes = &mut self.new_nodes;
            self.tree.push(&r.hash, |id, h| {
                if id.level >= super::tree::MIN_STORED_LEVEL {
                    nodes.push((id, h))
                }
            });
            st.execute(params![
                position as i64,
                event_id.to_string(),
                r.stream_id,
                r.stream_version as i64,
                r.event_type,
                r.schema_version as i64,
                r.occurred_at,
                r.recorded_at,
                command_id.to_string(),
                r.correlation_id,
                r.actor,
                r.data,
                &r.prev_hash[..],
                &r.hash[..],
            ])?;
            self.head = (position, r.hash, recorded_at.to_string());
        }
        Ok(rec)
    }
}
