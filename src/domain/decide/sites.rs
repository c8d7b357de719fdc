//! Sites and the coverage survey of accommodation structures.

use super::*;
use crate::domain::command::*;
use crate::domain::event::*;

/// A site authorised for vaccination.
pub(super) fn authorise_site(
    c: &AuthoriseSite,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    known_directorate(ctx, &c.directorate)?;
    if let Some(a) = &state.site {
        return Err(Rejection::SiteAlreadyAuthorised {
            directorate: c.directorate.clone(),
            site: c.site.clone(),
            authorised_on: a.authorised_on,
        });
    }
    Ok(vec![Event::SiteAuthorised(SiteAuthorised {
        directorate: c.directorate.clone(),
        site: c.site.clone(),
        site_kind: c.site_kind,
        authorised_on: c.authorised_on,
    })])
}

/// A structure's answer to the coverage survey.
pub(super) fn answer_coverage_survey(
    c: &AnswerCoverageSurvey,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    known_directorate(ctx, &c.directorate)?;
    if c.residents_with_one_dose > c.residents {
        return Err(Rejection::SurveyCountsInconsistent(
            "more residents with one dose than residents",
        ));
    }
    if c.residents_fully_vaccinated > c.residents_with_one_dose {
        return Err(Rejection::SurveyCountsInconsistent(
            "more residents fully vaccinated than residents with at least one dose",
        ));
    }
    Ok(vec![Event::CoverageSurveyAnswered(
        CoverageSurveyAnswered {
            survey_id: c.survey_id.clone(),
            structure_id: c.structure_id.clone(),
            structure_type: c.structure_type,
            directorate: c.directorate.clone(),
            as_of: c.as_of,
            residents: c.residents,
            residents_with_one_dose: c.residents_with_one_dose,
            residents_fully_vaccinated: c.residents_fully_vaccinated,
        },
    )])
}
