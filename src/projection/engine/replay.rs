//! Folding the log into states: reading on one thread, folding on another, in chunks saved
//! with their checkpoints.
use super::*;

impl Engine {
    /// Replays events `(from, to]` into `targets` (projection index, start position, state),
    /// skipping, per projection, events at or before its own start. Reading runs on one
    /// thread, scanning and folding on another, except for a short range (up to `BATCH`
    /// positions: a follower's usual step), read and folded on the calling thread (a thread
    /// and two wake-ups cost more than the work there). With `known_at`, stops at the first
    /// event recorded after it. Returns the last position read and its hash.
    pub(super) fn replay(
        &self,
        store: &dyn EventStore,
        targets: &mut [(usize, u64, &mut State)],
        from: u64,
        to: u64,
        known_at: Option<&str>,
    ) -> Result<(u64, [u8; 32]), ProjectionError> {
        let wanted: Vec<usize> = targets.iter().map(|t| t.0).collect();
        let mut last = (from, [0u8; 32]);
        if to.saturating_sub(from) <= BATCH as u64 {
            let mut batch = Vec::new();
            store.scan_data(from, to, &mut |e: DataRef<'_>| {
                self.take(e, known_at, &wanted, &mut last, &mut batch)
            })?;
            self.fold(targets, &batch, &mut Scratch::new(self.tz));
            return Ok(last);
        }
        let (tx, rx) = mpsc::sync_channel::<Vec<Owned>>(16);
        let result: Result<(), ProjectionError> = std::thread::scope(|s| {
            let reader = s.spawn(|| -> Result<(u64, [u8; 32]), StoreError> {
                let mut batch = Vec::with_capacity(BATCH);
                let mut last = (from, [0u8; 32]);
                store.scan_data(from, to, &mut |e: DataRef<'_>| {
                    if !self.take(e, known_at, &wanted, &mut last, &mut batch) {
                        return false;
                    }
                    if batch.len() == BATCH
                        && tx
                            .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                            .is_err()
                    {
                        return false;
                    }
                    true
                })?;
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                drop(tx);
                Ok(last)
            });
            let mut scratch = Scratch::new(self.tz);
            for batch in rx {
                self.fold(targets, &batch, &mut scratch);
            }
            last = reader
                .join()
                .map_err(|_| StoreError::Unavailable("the reader thread panicked".into()))??;
            Ok(())
        });
        result?;
        Ok(last)
    }
    /// Adds `e` to `batch` if a wanted projection folds its type; notes its position and hash
    /// in `last`. False (stop) at the first event recorded after `known_at`.
    pub(super) fn take(
        &self,
        e: DataRef<'_>,
        known_at: Option<&str>,
        wanted: &[usize],
        last: &mut (u64, [u8; 32]),
        batch: &mut Vec<Owned>,
    ) -> bool {
        if let Some(k) = known_at {
            if e.recorded_at > k {
                return false;
            }
        }
        *last = (e.position, e.hash);
        let router = &self.router;
        let Some(type_id) = router.type_id(e.event_type) else {
            return true;
        };
        if !router
            .routes(type_id)
            .iter()
            .any(|(p, _)| wanted.contains(p))
        {
            return true;
        }
        // Older schema versions are read as the current one (the upcasters).
        let data = match crate::domain::Event::upcast(e.event_type, e.schema_version, e.data) {
            Ok(Some(up)) => up,
            _ => e.data.to_string(),
        };
        let data = self.centre_as_id(e.event_type, data);
        batch.push(Owned {
            position: e.position,
            type_id,
            data,
            occurred_at: e.occurred_at.to_string(),
            envelope: router.needs_envelope.then(|| {
                Box::new([
                    e.stream_id.to_string(),
                    e.event_type.to_string(),
                    e.occurred_at.to_string(),
                    e.recorded_at.to_string(),
                ])
            }),
        });
        true
    }
    /// A ticket event of a log written before partner centres had ids names its centre: the
    /// name is read as the centre's id (the reference file's name-to-id map), so that a
    /// projection grouped by centre has one row per centre whatever the log's age.
    pub(super) fn centre_as_id(&self, event_type: &str, data: String) -> String {
        const FIELD: &str = "\"partner_centre\":\"";
        if !event_type.starts_with("Ticket") {
            return data;
        }
        let Some(start) = data.find(FIELD).map(|i| i + FIELD.len()) else {
            return data;
        };
        let Some(len) = data[start..].find('"') else {
            return data;
        };
        let value = &data[start..start + len];
        if value.contains('\\') || self.reference.partner_centres.contains_key(value) {
            return data;
        }
        match self.reference.partner_centre(value) {
            Some(c) => format!("{}{}{}", &data[..start], c.id, &data[start + len..]),
            None => data,
        }
    }
    /// Folds `batch` into the `targets` it concerns.
    pub(super) fn fold(
        &self,
        targets: &mut [(usize, u64, &mut State)],
        batch: &[Owned],
        scratch: &mut Scratch,
    ) {
        for o in batch {
            let fields = match Fields::parse(&o.data) {
                Ok(f) => f,
                Err(err) => {
                    tracing::error!(position = o.position, error = %err, "event data is not a JSON object; skipped");
                    continue;
                }
            };
            let env = o.envelope.as_deref();
            let input = Input {
                position: o.position,
                event_type: env.map(|e| e[1].as_str()).unwrap_or(""),
                stream_id: env.map(|e| e[0].as_str()).unwrap_or(""),
                occurred_at: &o.occurred_at,
                recorded_at: env.map(|e| e[3].as_str()).unwrap_or(""),
                fields: &fields,
            };
            for &(pi, si) in self.router.routes(o.type_id) {
                if let Some(t) = targets.iter_mut().find(|t| t.0 == pi) {
                    if o.position > t.1 {
                        self.compiled[pi].apply(t.2, si, &input, scratch);
                    }
                }
            }
        }
    }
    /// Folds what `lives` lack up to the head, saving after each chunk.
    pub(super) fn advance(
        &self,
        store: &dyn EventStore,
        lives: &mut [Live],
        head: u64,
    ) -> Result<u64, ProjectionError> {
        let behind: Vec<usize> = (0..lives.len())
            .filter(|&i| lives[i].checkpoint < head && self.compiled[i].def.fold.is_none())
            .collect();
        if behind.is_empty() {
            return Ok(head);
        }
        let mut from = behind
            .iter()
            .map(|&i| lives[i].checkpoint)
            .min()
            .unwrap_or(0);
        let span = tracing::info_span!("catch_up", from, to = head);
        let _e = span.enter();
        // In chunks, each saved with its checkpoint: a crash loses at most one chunk of work.
        while from < head {
            let to = (from + CATCH_UP_CHUNK).min(head);
            let group: Vec<usize> = behind
                .iter()
                .copied()
                .filter(|&i| lives[i].checkpoint < to)
                .collect();
            let mut states: Vec<State> = group
                .iter()
                .map(|&i| std::mem::take(&mut lives[i].state))
                .collect();
            let (pos, hash) = {
                let mut targets: Vec<(usize, u64, &mut State)> = group
                    .iter()
                    .zip(states.iter_mut())
                    .map(|(&i, s)| (i, lives[i].checkpoint, s))
                    .collect();
                self.replay(store, &mut targets, from, to, None)?
            };
            for (&i, s) in group.iter().zip(states) {
                lives[i].state = s;
                if pos > lives[i].checkpoint {
                    lives[i].checkpoint = pos;
                    lives[i].checkpoint_hash = hash;
                }
            }
            self.save(lives, &group)?;
            if pos <= from {
                break; // the log ended early (it cannot shrink; a source may lag its head)
            }
            from = pos;
        }
        Ok(from)
    }
}
