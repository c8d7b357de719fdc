//! The vaccination policy in force: intervals and opening dates are data, with the French
//! rules of late 2021 as defaults, and reference data (the directorates).

use super::types::{AgeBand, Product};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Intervals and opening dates the rules check against.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Time zone in which dates (report days, intervals, authorisation days) are read.
    pub time_zone: Tz,
    /// Minimum days between a first dose of this product and the second dose.
    pub second_dose_min_days: BTreeMap<Product, i64>,
    /// Date boosters open for the 65+ age bands.
    pub booster_open_65_plus: NaiveDate,
    /// Date boosters open for every adult.
    pub booster_open_adults: NaiveDate,
    /// Date boosters open for 12-17 year olds (`None`: not in this policy).
    pub booster_open_minors: Option<NaiveDate>,
    /// Minimum calendar months between the end of the primary series and a booster, by the
    /// date the booster is given: the last entry whose date is on or before the booster applies.
    pub booster_min_months: Vec<(NaiveDate, u32)>,
    /// How far in the future a dose may be dated (clock skew between devices).
    pub future_tolerance_secs: i64,
}

impl Default for Policy {
    fn default() -> Self {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("valid date");
        Policy {
            time_zone: chrono_tz::Europe::Paris,
            second_dose_min_days: BTreeMap::from([
                (Product::Comirnaty, 21),
                (Product::Spikevax, 28),
                (Product::Vaxzevria, 63),
            ]),
            booster_open_65_plus: d(2021, 9, 1),
            booster_open_adults: d(2021, 11, 27),
            booster_open_minors: None,
            // 5 months; shortened to 3 months from 2021-12-28 (French rule).
            booster_min_months: vec![(d(2020, 12, 27), 5), (d(2021, 12, 28), 3)],
            future_tolerance_secs: 300,
        }
    }
}

impl Policy {
    /// The local (campaign time zone) date of an instant.
    pub fn local_date(&self, at: DateTime<FixedOffset>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// The first instant after the end of `day` in the campaign time zone.
    pub fn end_of_day(&self, day: NaiveDate) -> DateTime<FixedOffset> {
        let next = day.succ_opt().unwrap_or(day);
        let midnight = next.and_hms_opt(0, 0, 0).expect("midnight exists");
        self.time_zone
            .from_local_datetime(&midnight)
            .earliest()
            .unwrap_or_else(|| self.time_zone.from_utc_datetime(&midnight))
            .fixed_offset()
    }

    /// Date boosters open for this age band, if they open at all.
    pub fn booster_opening(&self, band: AgeBand) -> Option<NaiveDate> {
        if band.is_minor() {
            self.booster_open_minors
        } else if band.is_65_plus() {
            Some(self.booster_open_65_plus.min(self.booster_open_adults))
        } else {
            Some(self.booster_open_adults)
        }
    }

    /// Months required between the end of the primary series and a booster given on `day`.
    pub fn booster_delay_months(&self, day: NaiveDate) -> u32 {
        self.booster_min_months
            .iter()
            .filter(|(from, _)| *from <= day)
            .map(|(_, m)| *m)
            .next_back()
            .unwrap_or(5)
    }
}

/// One territorial directorate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directorate {
    /// Stable identifier used in commands, stream ids and subjects (`lyon`).
    pub id: String,
    /// Display name (`Lyon`).
    pub name: String,
    /// Region, for display.
    #[serde(default)]
    pub region: String,
    /// Overseas directorate.
    #[serde(default)]
    pub overseas: bool,
}

/// A partner health-authority centre where tickets are redeemed.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerCentre {
    /// Stable identifier used in commands, events and partner tokens (`cv-lyon-gerland`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The directorate whose tickets it takes.
    pub directorate: String,
    /// First day it takes tickets.
    pub active_from: NaiveDate,
    /// Last day it takes tickets (`None`: still active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<NaiveDate>,
    /// Names it went by in logs written before centres had ids (read as the id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub former_names: Vec<String>,
}

impl PartnerCentre {
    /// Whether it takes tickets on `day`.
    pub fn active_on(&self, day: NaiveDate) -> bool {
        self.active_from <= day && self.active_until.is_none_or(|u| day <= u)
    }
}

/// Reference data: the directorates and the partner centres. Loaded from versioned files,
/// never hard-coded in rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reference {
    /// Version label of the reference file.
    pub version: String,
    /// Directorates by id.
    pub directorates: BTreeMap<String, Directorate>,
    /// Partner centres by id.
    pub partner_centres: BTreeMap<String, PartnerCentre>,
    /// Version label of the partner centres' file.
    pub partner_centres_version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CentresFile {
    version: String,
    #[serde(default, rename = "partner_centre")]
    centres: Vec<PartnerCentre>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceFile {
    version: String,
    #[serde(rename = "directorate")]
    directorates: Vec<Directorate>,
}

impl Reference {
    /// Parses a reference file (TOML: `version = "..."` and `[[directorate]]` tables).
    pub fn parse(text: &str) -> Result<Reference, String> {
        let file: ReferenceFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut directorates = BTreeMap::new();
        for d in file.directorates {
            if directorates.insert(d.id.clone(), d.clone()).is_some() {
                return Err(format!("directorate {:?} is listed twice", d.id));
            }
        }
        Ok(Reference {
            version: file.version,
            directorates,
            ..Reference::default()
        })
    }

    /// Adds the partner centres of a file (TOML: `version` and `[[partner_centre]]` tables),
    /// checking that each names a known directorate and that ids and names are unique.
    pub fn with_partner_centres(mut self, text: &str) -> Result<Reference, String> {
        let file: CentresFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for c in file.centres {
            if !self.directorates.contains_key(&c.directorate) {
                return Err(format!(
                    "partner centre {:?}: directorate {:?} is not in the reference list",
                    c.id, c.directorate
                ));
            }
            if c.id.is_empty()
                || !c
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "partner centre id {:?}: use a-z, 0-9 and - only",
                    c.id
                ));
            }
            if c.active_until.is_some_and(|u| u < c.active_from) {
                return Err(format!(
                    "partner centre {:?}: active_until is before active_from",
                    c.id
                ));
            }
            for n in std::iter::once(&c.name).chain(&c.former_names) {
                if let Some(other) = names.insert(n.clone(), c.id.clone()) {
                    return Err(format!(
                        "partner centres {other:?} and {:?} share the name {n:?}",
                        c.id
                    ));
                }
            }
            if self
                .partner_centres
                .insert(c.id.clone(), c.clone())
                .is_some()
            {
                return Err(format!("partner centre {:?} is listed twice", c.id));
            }
        }
        self.partner_centres_version = file.version;
        Ok(self)
    }

    /// The reference data shipped with this build (`reference/directorates.toml` and
    /// `reference/partner_centres.toml`).
    pub fn builtin() -> Reference {
        Reference::parse(include_str!("../../reference/directorates.toml"))
            .and_then(|r| {
                r.with_partner_centres(include_str!("../../reference/partner_centres.toml"))
            })
            .expect("the shipped reference files parse")
    }

    /// The partner centre a stored value names: its id, or (logs written before centres had
    /// ids) its name or a former name.
    pub fn partner_centre(&self, id_or_name: &str) -> Option<&PartnerCentre> {
        self.partner_centres.get(id_or_name).or_else(|| {
            self.partner_centres
                .values()
                .find(|c| c.name == id_or_name || c.former_names.iter().any(|n| n == id_or_name))
        })
    }

    /// A stored centre value as an id (unchanged when no centre answers to it).
    pub fn centre_id<'a>(&'a self, id_or_name: &'a str) -> &'a str {
        self.partner_centre(id_or_name)
            .map(|c| c.id.as_str())
            .unwrap_or(id_or_name)
    }

    /// Display name of a partner centre (id or former name), or the value as stored.
    pub fn centre_name<'a>(&'a self, id_or_name: &'a str) -> &'a str {
        self.partner_centre(id_or_name)
            .map(|c| c.name.as_str())
            .unwrap_or(id_or_name)
    }

    /// Display name of a directorate, or its id.
    pub fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.directorates
            .get(id)
            .map(|d| d.name.as_str())
            .unwrap_or(id)
    }
}
