//! Small value types shared by commands and events: closed vocabularies with their
//! stable wire spellings.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stable wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

wire_enum!(
    /// Age band of the vaccinated person (no birth date is ever stored).
    AgeBand {
        /// 12 to 17 years.
        A12to17 = "12-17",
        /// 18 to 29 years.
        A18to29 = "18-29",
        /// 30 to 39 years.
        A30to39 = "30-39",
        /// 40 to 49 years.
        A40to49 = "40-49",
        /// 50 to 54 years.
        A50to54 = "50-54",
        /// 55 to 64 years.
        A55to64 = "55-64",
        /// 65 to 74 years.
        A65to74 = "65-74",
        /// 75 and over.
        A75plus = "75+",
    }
);

impl AgeBand {
    /// Minors (12-17).
    pub fn is_minor(self) -> bool {
        self == AgeBand::A12to17
    }
    /// 55 and over.
    pub fn is_55_plus(self) -> bool {
        matches!(self, AgeBand::A55to64 | AgeBand::A65to74 | AgeBand::A75plus)
    }
    /// 65 and over (the first booster wave).
    pub fn is_65_plus(self) -> bool {
        matches!(self, AgeBand::A65to74 | AgeBand::A75plus)
    }
}

wire_enum!(
    /// Who received the dose: a user of the OFII's services, or an OFII agent (staff).
    Recipient {
        /// An asylum seeker, migrant worker or other user.
        User = "user",
        /// OFII staff.
        Agent = "agent",
    }
);

wire_enum!(
    /// The vaccine product.
    Product {
        /// Comirnaty (Pfizer-BioNTech), EU/1/20/1528, CVX 208.
        Comirnaty = "comirnaty",
        /// Spikevax (Moderna), EU/1/20/1507, CVX 207.
        Spikevax = "spikevax",
        /// Vaxzevria (AstraZeneca), EU/1/21/1529, CVX 210.
        Vaxzevria = "vaxzevria",
        /// COVID-19 Vaccine Janssen (Jcovden), EU/1/20/1525, CVX 212.
        Jcovden = "jcovden",
    }
);

impl Product {
    /// Doses in the product's primary series (FHIR `seriesDoses`).
    pub fn primary_series_doses(self) -> u32 {
        match self {
            Product::Jcovden => 1,
            Product::Comirnaty | Product::Spikevax | Product::Vaxzevria => 2,
        }
    }

    /// The name a nurse reads.
    pub fn label(self) -> &'static str {
        match self {
            Product::Comirnaty => "Comirnaty",
            Product::Spikevax => "Spikevax",
            Product::Vaxzevria => "Vaxzevria",
            Product::Jcovden => "Jcovden",
        }
    }
}

wire_enum!(
    /// Place of the dose in the person's schedule.
    DoseKind {
        /// First injection of the primary series.
        First = "first",
        /// Second injection of the primary series.
        Second = "second",
        /// Booster after a completed primary series.
        Booster = "booster",
    }
);

wire_enum!(
    /// Kind of vaccination site.
    SiteKind {
        /// The directorate's own premises.
        DtPremises = "dt_premises",
        /// The one-stop desk for asylum seekers (Paris).
        Guda = "guda",
        /// An accommodation structure (CADA, HUDA, hostel…).
        Accommodation = "accommodation",
        /// A mobile team.
        Mobile = "mobile",
    }
);

wire_enum!(
    /// Evidence shown for a dose given elsewhere.
    Evidence {
        /// An EU digital COVID certificate.
        EuDcc = "eu_dcc",
        /// A paper certificate.
        Paper = "paper",
        /// The person's declaration.
        Declared = "declared",
    }
);

wire_enum!(
    /// Why a planned dose was not given.
    NotAdministeredReason {
        /// The person declined.
        Refused = "refused",
        /// A medical contraindication.
        Contraindicated = "contraindicated",
        /// Postponed (fever, recent infection…).
        Deferred = "deferred",
    }
);

wire_enum!(
    /// Why an entry is reversed.
    ReversalReason {
        /// The entry should never have been made.
        EnteredInError = "entered_in_error",
        /// The same dose was entered twice.
        DuplicateEntry = "duplicate_entry",
    }
);

wire_enum!(
    /// Type of accommodation structure answering the coverage survey.
    StructureType {
        /// Reception centre for asylum seekers.
        Cada = "CADA",
        /// Emergency accommodation for asylum seekers.
        Huda = "HUDA",
        /// Reception and situation-review centre.
        Caes = "CAES",
        /// Provisional accommodation centre (refugees).
        Cph = "CPH",
        /// Reception and accommodation programme for asylum seekers.
        Prahda = "PRAHDA",
        /// Migrant-worker hostel.
        Ftm = "FTM",
    }
);
