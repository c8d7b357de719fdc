//! Doses: given by the OFII, recorded as given elsewhere, not given, and reversals of entries made in error (always recorded: what a reversal breaks is a finding, see `findings`).

use super::*;
use crate::domain::command::*;
use crate::domain::event::*;
use crate::domain::types::*;
use chrono::{DateTime, Duration, FixedOffset, Months};

/// An OFII dose: its site open that day, its session, the product for the age band, the series rules.
pub(super) fn administer_dose(
    c: &AdministerDose,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    not_future(ctx, "dose", c.administered_at)?;
    site_open(ctx, &c.directorate, &c.site, c.administered_at)?;
    if let Some(sid) = &c.session_id {
        let matches = ctx
            .session
            .and_then(|s| s.session.as_ref())
            .is_some_and(|s| s.opened.directorate == c.directorate && s.opened.site == c.site);
        if !matches {
            return Err(Rejection::UnknownSession(sid.clone()));
        }
    }
    product_allowed(c.product, c.age_band)?;
    series_rules(
        &state.person,
        ctx,
        c.dose,
        c.administered_at,
        Some(c.age_band),
    )?;
    let dose_number = state
        .person
        .valid()
        .filter(|d| d.at <= c.administered_at)
        .count() as u32
        + 1;
    Ok(vec![Event::DoseAdministered(DoseAdministered {
        person_ref: c.person_ref.clone(),
        age_band: c.age_band,
        recipient: c.recipient,
        directorate: c.directorate.clone(),
        site: c.site.clone(),
        session_id: c.session_id.clone(),
        product: c.product,
        lot: c.lot.clone(),
        dose: c.dose,
        dose_number,
        series_doses: c.product.primary_series_doses(),
        administered_at: c.administered_at,
        prior_infection_counted: c.prior_infection_counted,
    })])
}

/// A dose given elsewhere: the series order only (a certificate records what happened).
pub(super) fn record_external_dose(
    c: &RecordExternalDose,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    not_future(ctx, "dose", c.administered_at)?;
    series_rules(&state.person, ctx, c.dose, c.administered_at, None)?;
    Ok(vec![Event::ExternalDoseRecorded(ExternalDoseRecorded {
        person_ref: c.person_ref.clone(),
        product: c.product,
        dose: c.dose,
        administered_at: c.administered_at,
        evidence: c.evidence,
    })])
}

/// A person seen but not vaccinated.
pub(super) fn record_dose_not_administered(
    c: &RecordDoseNotAdministered,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    not_future(ctx, "time", c.at)?;
    site_open(ctx, &c.directorate, &c.site, c.at)?;
    Ok(vec![Event::DoseNotAdministered(DoseNotAdministered {
        person_ref: c.person_ref.clone(),
        directorate: c.directorate.clone(),
        site: c.site.clone(),
        reason: c.reason,
        at: c.at,
    })])
}

/// The reversal of an entry made in error: accepted whenever the entry exists and is not reversed yet, whatever was recorded after it.
pub(super) fn reverse_dose_entry(
    c: &ReverseDoseEntry,
    state: &StreamState,
) -> Result<Vec<Event>, Rejection> {
    let entry = state
        .person
        .doses
        .iter()
        .find(|d| d.origin.command_id == c.reverses)
        .ok_or(Rejection::UnknownEntry(c.reverses))?;
    if entry.reversed {
        return Err(Rejection::AlreadyReversed(c.reverses));
    }
    // Accepted whatever was recorded after it (a correction states a fact about the
    // record): what it breaks in the series becomes a finding (`findings`), not a refusal.
    match &entry.given {
        Some(given) => Ok(vec![Event::DoseEntryReversed(DoseEntryReversed {
            reversed_event_id: entry.origin.event_id,
            reversed_command_id: entry.origin.command_id,
            reason: c.reason,
            person_ref: given.person_ref.clone(),
            age_band: given.age_band,
            recipient: given.recipient,
            directorate: given.directorate.clone(),
            site: given.site.clone(),
            session_id: given.session_id.clone(),
            product: given.product,
            dose: given.dose,
            administered_at: given.administered_at,
        })]),
        None => Ok(vec![Event::ExternalDoseReversed(ExternalDoseReversed {
            reversed_event_id: entry.origin.event_id,
            reversed_command_id: entry.origin.command_id,
            reason: c.reason,
            person_ref: entry.person_ref.clone(),
            product: entry.product,
            dose: entry.kind,
            administered_at: entry.at,
        })]),
    }
}

pub(super) fn product_allowed(product: Product, band: AgeBand) -> Result<(), Rejection> {
    let refuse = |rule| {
        Err(Rejection::ProductNotAllowedForAge {
            product: product.label(),
            band: band.as_str(),
            rule,
        })
    };
    if band.is_minor() && product != Product::Comirnaty {
        return refuse("12-17 year olds receive Comirnaty only");
    }
    if matches!(product, Product::Vaxzevria | Product::Jcovden) && !band.is_55_plus() {
        return refuse("Vaxzevria and Jcovden are for people aged 55 and over");
    }
    Ok(())
}

/// The schedule rules shared by OFII doses and doses given elsewhere. Intervals and boosters'
/// opening apply only to the OFII's own doses (`checked`): a certificate records what happened.
pub(super) fn series_rules(
    person: &PersonState,
    ctx: &Context,
    kind: DoseKind,
    at: DateTime<FixedOffset>,
    band: Option<AgeBand>,
) -> Result<(), Rejection> {
    let policy = ctx.policy;
    let day = policy.local_date(at);
    let completed = person.series_completed_at(policy);
    match kind {
        DoseKind::First => {
            if let Some(first) = person.first() {
                return Err(Rejection::FirstDoseAlreadyRecorded {
                    on: policy.local_date(first.at),
                    product: first.product.label(),
                });
            }
        }
        DoseKind::Second => {
            let Some(first) = person.first() else {
                return Err(Rejection::NoFirstDose);
            };
            if let Some(completed) = completed {
                return Err(Rejection::PrimarySeriesAlreadyComplete { completed });
            }
            if band.is_some() {
                if let Some(&days) = policy.second_dose_min_days.get(&first.product) {
                    let first_day = policy.local_date(first.at);
                    let earliest = first_day + Duration::days(days);
                    if day < earliest {
                        return Err(Rejection::SecondDoseTooEarly {
                            earliest,
                            days,
                            product: first.product.label(),
                            first: first_day,
                        });
                    }
                }
            }
        }
        DoseKind::Booster => {
            if let Some(band) = band {
                match policy.booster_opening(band) {
                    None => {
                        return Err(Rejection::BoosterNotOpenForBand {
                            band: band.as_str(),
                        })
                    }
                    Some(opens) if day < opens => {
                        return Err(Rejection::BoosterNotOpen {
                            band: band.as_str(),
                            on: day,
                            opens,
                        })
                    }
                    Some(_) => {}
                }
            }
            let Some(completed) = completed else {
                return Err(Rejection::PrimarySeriesIncomplete);
            };
            if let Some(b) = person.booster() {
                return Err(Rejection::BoosterAlreadyGiven {
                    on: policy.local_date(b.at),
                });
            }
            if band.is_some() {
                let months = policy.booster_delay_months(day);
                let earliest = completed
                    .checked_add_months(Months::new(months))
                    .unwrap_or(completed);
                if day < earliest {
                    return Err(Rejection::BoosterTooEarly {
                        earliest,
                        months,
                        completed,
                    });
                }
            }
        }
    }
    Ok(())
}
