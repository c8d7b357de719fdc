//! Tickets for walk-in vaccination at partner centres: issued, redeemed, expired.

use super::*;
use crate::domain::command::*;
use crate::domain::event::*;
use chrono::NaiveDate;

/// A ticket for a partner centre of its directorate.
pub(super) fn issue_ticket(
    c: &IssueTicket,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let policy = ctx.policy;
    known_directorate(ctx, &c.directorate)?;
    not_future(ctx, "issue time", c.issued_at)?;
    if state.ticket.is_some() {
        return Err(Rejection::TicketAlreadyIssued(c.ticket_id.clone()));
    }
    let issued_on = policy.local_date(c.issued_at);
    partner_centre(ctx, &c.partner_centre, &c.directorate, issued_on)?;
    if c.valid_until < issued_on {
        return Err(Rejection::TicketValidityInvalid {
            valid_until: c.valid_until,
            issued_on,
        });
    }
    Ok(vec![Event::TicketIssued(TicketIssued {
        ticket_id: c.ticket_id.clone(),
        person_ref: c.person_ref.clone(),
        directorate: c.directorate.clone(),
        partner_centre: c.partner_centre.clone(),
        issued_at: c.issued_at,
        valid_until: c.valid_until,
    })])
}

/// A ticket used at a partner centre.
pub(super) fn redeem_ticket(
    c: &RedeemTicket,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let policy = ctx.policy;
    not_future(ctx, "redemption time", c.redeemed_at)?;
    let t = open_ticket(state, &c.ticket_id)?;
    if policy.local_date(c.redeemed_at) > t.issued.valid_until {
        return Err(Rejection::TicketExpired(
            c.ticket_id.clone(),
            t.issued.valid_until,
        ));
    }
    if c.redeemed_at < t.issued.issued_at {
        return Err(Rejection::RedeemedBeforeIssued(c.ticket_id.clone()));
    }
    let centre = match &c.partner_centre {
        Some(id) => {
            let day = policy.local_date(c.redeemed_at);
            partner_centre(ctx, id, &t.issued.directorate, day)?;
            id.clone()
        }
        // A ticket of a log written before centres had ids names its centre.
        None => ctx
            .reference
            .centre_id(&t.issued.partner_centre)
            .to_string(),
    };
    Ok(vec![Event::TicketRedeemed(TicketRedeemed {
        ticket_id: c.ticket_id.clone(),
        directorate: t.issued.directorate.clone(),
        partner_centre: centre,
        redeemed_at: c.redeemed_at,
        dose: c.dose,
    })])
}

/// An unused ticket past its validity.
pub(super) fn expire_ticket(
    c: &ExpireTicket,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let policy = ctx.policy;
    not_future(ctx, "expiry time", c.at)?;
    let t = open_ticket(state, &c.ticket_id)?;
    if policy.local_date(c.at) <= t.issued.valid_until {
        return Err(Rejection::TicketStillValid(
            c.ticket_id.clone(),
            t.issued.valid_until,
        ));
    }
    Ok(vec![Event::TicketExpired(TicketExpired {
        ticket_id: c.ticket_id.clone(),
        directorate: t.issued.directorate.clone(),
        partner_centre: ctx
            .reference
            .centre_id(&t.issued.partner_centre)
            .to_string(),
        at: c.at,
    })])
}

/// The partner centre `id` as a centre of `directorate` taking tickets on `day`.
pub(super) fn partner_centre(
    ctx: &Context,
    id: &str,
    directorate: &str,
    day: NaiveDate,
) -> Result<(), Rejection> {
    let hint = || {
        let own: Vec<String> = ctx
            .reference
            .partner_centres
            .values()
            .filter(|c| c.directorate == directorate && c.active_on(day))
            .map(|c| format!("{} ({})", c.id, c.name))
            .collect();
        if own.is_empty() {
            format!("directorate {directorate} has no partner centre taking tickets on {day} in the reference list")
        } else {
            format!(
                "give the id of one of {directorate}'s centres: {}",
                own.join(", ")
            )
        }
    };
    let refuse = |problem: String| {
        Err(Rejection::UnknownPartnerCentre {
            centre: id.to_string(),
            problem,
            hint: hint(),
        })
    };
    match ctx.reference.partner_centres.get(id) {
        None => match ctx.reference.partner_centre(id) {
            Some(c) => refuse(format!("is a name; centres are named by id ({})", c.id)),
            None => refuse("is not in the reference list of partner centres".into()),
        },
        Some(c) if c.directorate != directorate => refuse(format!(
            "belongs to directorate {}, not {directorate}",
            c.directorate
        )),
        Some(c) if !c.active_on(day) => refuse(format!(
            "does not take tickets on {day} (active from {}{})",
            c.active_from,
            c.active_until
                .map(|u| format!(" until {u}"))
                .unwrap_or_default()
        )),
        Some(_) => Ok(()),
    }
}

/// The ticket of the stream, if it was issued and is neither redeemed nor expired: what a
/// redemption and an expiry both need.
fn open_ticket<'s>(state: &'s StreamState, ticket_id: &str) -> Result<&'s TicketState, Rejection> {
    let t = state
        .ticket
        .as_ref()
        .ok_or_else(|| Rejection::UnknownTicket(ticket_id.to_string()))?;
    if let Some(on) = t.redeemed_on {
        return Err(Rejection::TicketAlreadyRedeemed(ticket_id.to_string(), on));
    }
    if t.expired {
        return Err(Rejection::TicketExpired(
            ticket_id.to_string(),
            t.issued.valid_until,
        ));
    }
    Ok(t)
}
