//! Domain: the brake on mass removal (docs/architecture.md §2 "The brake on mass removal",
//! settings `cleverreach:safety:*`).
//!
//! A full reconcile removes every active receiver nobody claims (rule 8), so a CRM read that
//! comes back empty by mistake (an application user that sees only its own records, a dynamic
//! list's query edited to match nothing) would empty the group; under the default deletion
//! settings turning sync off deletes a group at once. The brake stops a removal that is large in
//! both senses, more than `maxremovalpercent` percent *and* more than `maxremovals` receivers of
//! the group's active receivers, and a deletion of a group holding more than `maxremovals`
//! active receivers, until an administrator confirms it once on the source.

use super::change::column;
use std::fmt;

/// `cleverreach:safety:*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BrakeSettings {
    /// `maxremovalpercent` (0–100): a removal of at most this share of the group's active
    /// receivers never stops. 100 turns the brake off for removals.
    pub max_removal_percent: u32,
    /// `maxremovals`: a removal (or deletion) of at most this many active receivers never
    /// stops, whatever the share.
    pub max_removals: u32,
}

impl Default for BrakeSettings {
    fn default() -> Self {
        BrakeSettings {
            max_removal_percent: 20,
            max_removals: 100,
        }
    }
}

/// What would be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Removal {
    /// A reconcile removes `removing` of the group's `active` receivers.
    Receivers { removing: usize, active: usize },
    /// The group is deleted with its `active` receivers.
    Group { active: usize },
}

impl Removal {
    /// Active receivers that would go.
    pub fn removing(self) -> usize {
        match self {
            Removal::Receivers { removing, .. } => removing,
            Removal::Group { active } => active,
        }
    }
}

/// A removal the brake stopped; its text is what the administrator reads on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Held(pub Removal);

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Removal::Receivers { removing, active } => write!(
                f,
                "would remove {} of {} receivers",
                thousands(removing),
                thousands(active)
            )?,
            Removal::Group { active } => write!(
                f,
                "would delete the group with its {} active receivers",
                thousands(active)
            )?,
        }
        write!(f, "; set {} to yes to proceed", column::CONFIRM_REMOVALS)
    }
}

/// What the brake says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Under the thresholds: go ahead.
    Go,
    /// Over the thresholds, but an administrator confirmed it: go ahead (the confirmation is
    /// used up).
    Confirmed(Held),
    /// Over the thresholds: do not remove anything; say why on the source.
    Hold(Held),
}

impl Verdict {
    /// The removal may go ahead.
    pub fn proceeds(self) -> bool {
        !matches!(self, Verdict::Hold(_))
    }

    /// What was held back, when the removal may not go ahead.
    pub fn held(self) -> Option<Held> {
        match self {
            Verdict::Hold(held) => Some(held),
            Verdict::Go | Verdict::Confirmed(_) => None,
        }
    }
}

/// Whether a removal exceeds the thresholds (both of them, for a reconcile).
pub fn exceeds(settings: &BrakeSettings, removal: Removal) -> bool {
    let over_count = |n: usize| n as u64 > u64::from(settings.max_removals);
    match removal {
        Removal::Receivers { removing, active } => {
            // removing / active > percent / 100, in whole numbers.
            let over_share =
                removing as u128 * 100 > active as u128 * u128::from(settings.max_removal_percent);
            over_share && over_count(removing)
        }
        Removal::Group { active } => over_count(active),
    }
}

/// The brake's decision on a removal; `confirmed` = the source carries a confirmation.
pub fn check(settings: &BrakeSettings, removal: Removal, confirmed: bool) -> Verdict {
    if !exceeds(settings, removal) {
        Verdict::Go
    } else if confirmed {
        Verdict::Confirmed(Held(removal))
    } else {
        Verdict::Hold(Held(removal))
    }
}

/// `1234567` → `1,234,567` (the numbers administrators read).
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: BrakeSettings = BrakeSettings {
        max_removal_percent: 20,
        max_removals: 100,
    };

    fn receivers(removing: usize, active: usize) -> Removal {
        Removal::Receivers { removing, active }
    }

    #[test]
    fn emptying_a_group_of_a_thousand_is_held_with_the_numbers_and_the_column_to_set() {
        let verdict = check(&DEFAULT, receivers(1000, 1000), false);
        let Verdict::Hold(held) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(
            held.to_string(),
            "would remove 1,000 of 1,000 receivers; set crc_confirmremovals to yes to proceed"
        );
    }

    #[test]
    fn a_removal_must_exceed_both_the_share_and_the_count_to_be_held() {
        // 101 of 1000 is 10 %: many, but a small share.
        assert_eq!(check(&DEFAULT, receivers(101, 1000), false), Verdict::Go);
        // 100 of 100 is all of them, but not more than 100.
        assert_eq!(check(&DEFAULT, receivers(100, 100), false), Verdict::Go);
        // 201 of 1000 is over 20 % and over 100.
        assert!(!check(&DEFAULT, receivers(201, 1000), false).proceeds());
        // Exactly 20 % is not more than 20 %.
        assert_eq!(check(&DEFAULT, receivers(200, 1000), false), Verdict::Go);
        assert_eq!(check(&DEFAULT, receivers(0, 0), false), Verdict::Go);
    }

    #[test]
    fn a_confirmation_lets_a_held_removal_through() {
        let verdict = check(&DEFAULT, receivers(1000, 1000), true);
        assert!(verdict.proceeds());
        assert!(matches!(verdict, Verdict::Confirmed(_)));
    }

    #[test]
    fn deleting_a_group_is_held_when_it_holds_more_than_maxremovals_active_receivers() {
        assert_eq!(
            check(&DEFAULT, Removal::Group { active: 100 }, false),
            Verdict::Go
        );
        let verdict = check(&DEFAULT, Removal::Group { active: 2500 }, false);
        let Verdict::Hold(held) = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(
            held.to_string(),
            "would delete the group with its 2,500 active receivers; set crc_confirmremovals to yes to proceed"
        );
    }

    #[test]
    fn a_hundred_percent_threshold_never_holds_a_removal() {
        let off = BrakeSettings {
            max_removal_percent: 100,
            max_removals: 0,
        };
        assert_eq!(check(&off, receivers(5000, 5000), false), Verdict::Go);
    }

    #[test]
    fn large_numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
