//! Vaccination sessions: opened at an authorised site, closed with their attendance.

use super::*;
use crate::domain::command::*;
use crate::domain::event::*;

/// A session opened at an authorised site.
pub(super) fn open_session(
    c: &OpenSession,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    not_future(ctx, "opening time", c.opened_at)?;
    if state.session.is_some() {
        return Err(Rejection::SessionAlreadyOpened(c.session_id.clone()));
    }
    site_open(ctx, &c.directorate, &c.site, c.opened_at)?;
    Ok(vec![Event::SessionOpened(SessionOpened {
        session_id: c.session_id.clone(),
        directorate: c.directorate.clone(),
        site: c.site.clone(),
        opened_at: c.opened_at,
    })])
}

/// A session closed with its attendance.
pub(super) fn close_session(
    c: &CloseSession,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    not_future(ctx, "closing time", c.closed_at)?;
    let s = state
        .session
        .as_ref()
        .ok_or_else(|| Rejection::UnknownSession(c.session_id.clone()))?;
    if s.closed {
        return Err(Rejection::SessionAlreadyClosed(c.session_id.clone()));
    }
    if c.closed_at < s.opened.opened_at {
        return Err(Rejection::SessionClosedBeforeOpened(
            c.session_id.clone(),
            s.opened.opened_at,
        ));
    }
    Ok(vec![Event::SessionClosed(SessionClosed {
        session_id: c.session_id.clone(),
        directorate: s.opened.directorate.clone(),
        site: s.opened.site.clone(),
        opened_at: s.opened.opened_at,
        closed_at: c.closed_at,
        attendance: c.attendance,
    })])
}
