//! Usage credits: a remaining count spent atomically per verify, with an
//! optional daily or monthly refill at a fixed time of day (UTC).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Month, Time};

use super::error::ControlError;
use crate::clock::Timestamp;

/// How often credits refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefillPeriod {
    /// Every day at the refill time.
    Daily,
    /// On the first day of every month at the refill time.
    Monthly,
}

impl RefillPeriod {
    /// `"daily"` or `"monthly"`, as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    /// Parses [`RefillPeriod::as_str`] output.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Self::Daily),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }
}

/// A refill: at each refill instant the remaining count is set to `amount`
/// (unused credits do not accumulate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Refill {
    /// The count after a refill.
    pub amount: u64,
    /// Daily or monthly.
    pub period: RefillPeriod,
    /// Time of day of the refill, in seconds after midnight UTC.
    #[serde(default)]
    pub at_second: u32,
}

impl Refill {
    /// A refill to `amount` every `period` at midnight UTC.
    ///
    /// # Errors
    /// [`ControlError::Credits`] when `amount` exceeds [`Credits::MAX`].
    pub fn new(amount: u64, period: RefillPeriod) -> Result<Self, ControlError> {
        if amount > Credits::MAX {
            return Err(ControlError::Credits("refill amount is too large"));
        }
        Ok(Self { amount, period, at_second: 0 })
    }

    /// The same refill at `hour:minute` UTC.
    ///
    /// # Errors
    /// [`ControlError::Credits`] for an hour above 23 or a minute above 59.
    pub fn at(mut self, hour: u8, minute: u8) -> Result<Self, ControlError> {
        if hour > 23 || minute > 59 {
            return Err(ControlError::Credits("refill time must be HH:MM UTC"));
        }
        self.at_second = u32::from(hour) * 3600 + u32::from(minute) * 60;
        Ok(self)
    }

    /// The latest refill instant at or before `now`. A store refills a key
    /// whose last refill is older than this.
    #[must_use]
    pub fn last_instant(&self, now: Timestamp) -> Timestamp {
        let now_dt = now.to_offset_date_time();
        let secs = self.at_second.min(86_399);
        let at = Time::from_hms(
            u8::try_from(secs / 3600).unwrap_or(0),
            u8::try_from(secs / 60 % 60).unwrap_or(0),
            u8::try_from(secs % 60).unwrap_or(0),
        )
        .unwrap_or(Time::MIDNIGHT);
        let candidate = |date: Date| date.with_time(at).assume_utc();
        let instant = match self.period {
            RefillPeriod::Daily => {
                let today = candidate(now_dt.date());
                if today <= now_dt { today } else { candidate(now_dt.date().previous_day().unwrap_or(Date::MIN)) }
            }
            RefillPeriod::Monthly => {
                let first = |y: i32, m: Month| Date::from_calendar_date(y, m, 1).unwrap_or(Date::MIN);
                let this_month = candidate(first(now_dt.year(), now_dt.month()));
                if this_month <= now_dt {
                    this_month
                } else {
                    let (y, m) = match now_dt.month() {
                        Month::January => (now_dt.year() - 1, Month::December),
                        m => (now_dt.year(), m.previous()),
                    };
                    candidate(first(y, m))
                }
            }
        };
        Timestamp::try_from(instant).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Usage credits of a key: what remains (as last read from the store: the
/// store holds the live count and spends it atomically) and an optional
/// refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Credits {
    /// Credits left.
    pub remaining: u64,
    /// Refill, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
    /// When the credits were last refilled (or set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refilled_at: Option<Timestamp>,
}

impl Credits {
    /// Largest credit count (fits every store's signed 64-bit integer).
    pub const MAX: u64 = i64::MAX as u64;

    /// `remaining` credits, never refilled.
    ///
    /// # Errors
    /// [`ControlError::Credits`] above [`Credits::MAX`].
    pub fn new(remaining: u64) -> Result<Self, ControlError> {
        if remaining > Self::MAX {
            return Err(ControlError::Credits("credit count is too large"));
        }
        Ok(Self { remaining, refill: None, refilled_at: None })
    }

    /// Checks values that did not come through the constructors (a
    /// deserialised body): counts within [`Credits::MAX`], a refill time
    /// within the day.
    ///
    /// # Errors
    /// [`ControlError::Credits`] naming what is out of range.
    pub fn check(&self) -> Result<(), ControlError> {
        if self.remaining > Self::MAX {
            return Err(ControlError::Credits("credit count is too large"));
        }
        match self.refill {
            Some(r) if r.amount > Self::MAX => Err(ControlError::Credits("refill amount is too large")),
            Some(r) if r.at_second >= 86_400 => Err(ControlError::Credits("refill time must be within the day")),
            _ => Ok(()),
        }
    }

    /// The same credits with a refill; `set_at` is when they were set, so the
    /// first refill is the first refill instant after it.
    #[must_use]
    pub fn refill(mut self, refill: Refill, set_at: Timestamp) -> Self {
        self.refill = Some(refill);
        self.refilled_at = Some(set_at);
        self
    }
}

impl Credits {
    /// Whether a refill is due: the key has a refill and `refill_due` is
    /// later than its last refill (or it was never refilled).
    #[must_use]
    pub fn refill_is_due(&self, refill_due: Option<Timestamp>) -> bool {
        match (self.refill, refill_due) {
            (Some(_), Some(due)) => self.refilled_at.is_none_or(|at| at < due),
            _ => false,
        }
    }

    /// The count `spend_credits` checks against: the refill amount when a
    /// refill is due, else what remains.
    #[must_use]
    pub fn available(&self, refill_due: Option<Timestamp>) -> u64 {
        match self.refill {
            Some(r) if self.refill_is_due(refill_due) => r.amount,
            _ => self.remaining,
        }
    }

    /// Spending `cost` from these credits, as every store does it in one
    /// atomic step: refill first if due, then spend if enough remain.
    /// Returns the outcome and, when credits were spent, the credits to
    /// store; on [`CreditSpend::Exhausted`] nothing is written (a due
    /// refill is applied by the next spend that succeeds).
    #[must_use]
    pub fn spend(&self, cost: u64, refill_due: Option<Timestamp>) -> (CreditSpend, Option<Self>) {
        let available = self.available(refill_due);
        let Some(remaining) = available.checked_sub(cost) else {
            return (CreditSpend::Exhausted { remaining: available }, None);
        };
        let mut next = *self;
        next.remaining = remaining;
        if self.refill_is_due(refill_due) {
            next.refilled_at = refill_due;
        }
        (CreditSpend::Spent { remaining }, Some(next))
    }
}

/// What [`KeyStore::spend_credits`](crate::KeyStore::spend_credits) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreditSpend {
    /// The cost was spent; this many remain.
    Spent {
        /// Credits left after this spend.
        remaining: u64,
    },
    /// Fewer credits than the cost remain; nothing was spent.
    Exhausted {
        /// Credits left (less than the cost).
        remaining: u64,
    },
    /// The key has no credits (unlimited use): nothing to spend.
    Unlimited,
}

impl fmt::Display for RefillPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefillPeriod {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or(ControlError::Credits("refill period must be daily or monthly"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daily_refill_instants() {
        let r = Refill::new(100, RefillPeriod::Daily).unwrap().at(6, 30).unwrap();
        assert_eq!(r.last_instant(t("2026-03-10T07:00:00Z")), t("2026-03-10T06:30:00Z"));
        assert_eq!(r.last_instant(t("2026-03-10T06:30:00Z")), t("2026-03-10T06:30:00Z"), "inclusive");
        assert_eq!(r.last_instant(t("2026-03-10T06:29:59Z")), t("2026-03-09T06:30:00Z"));
        assert_eq!(r.last_instant(t("2026-03-01T00:00:00Z")), t("2026-02-28T06:30:00Z"));
    }

    #[test]
    fn monthly_refill_instants() {
        let r = Refill::new(5, RefillPeriod::Monthly).unwrap();
        assert_eq!(r.last_instant(t("2026-03-10T07:00:00Z")), t("2026-03-01T00:00:00Z"));
        assert_eq!(r.last_instant(t("2026-01-01T00:00:00Z")), t("2026-01-01T00:00:00Z"));
        let late = r.at(12, 0).unwrap();
        assert_eq!(late.last_instant(t("2026-01-01T11:59:59Z")), t("2025-12-01T12:00:00Z"));
        assert_eq!(late.last_instant(t("2026-03-01T11:00:00Z")), t("2026-02-01T12:00:00Z"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Credits::new(u64::MAX).is_err());
        assert!(Refill::new(u64::MAX, RefillPeriod::Daily).is_err());
        let r = Refill::new(1, RefillPeriod::Daily).unwrap();
        assert!(r.at(24, 0).is_err() && r.at(0, 60).is_err());
        assert!("weekly".parse::<RefillPeriod>().is_err());
        let mut late: Credits =
            serde_json::from_str(r#"{"remaining":1,"refill":{"amount":1,"period":"daily","atSecond":86400}}"#).unwrap();
        assert_eq!(late.check(), Err(ControlError::Credits("refill time must be within the day")));
        late.refill = None;
        assert_eq!(late.check(), Ok(()));
        late.remaining = u64::MAX;
        assert!(late.check().is_err());
        assert_eq!("monthly".parse::<RefillPeriod>().unwrap(), RefillPeriod::Monthly);
    }

    #[test]
    fn spend_refills_once_per_due_instant() {
        let set = t("2026-03-09T00:00:00Z");
        let due = t("2026-03-10T00:00:00Z");
        let c = Credits::new(1).unwrap().refill(Refill::new(3, RefillPeriod::Daily).unwrap(), set);
        let (out, next) = c.spend(1, Some(set));
        assert_eq!(out, CreditSpend::Spent { remaining: 0 });
        let next = next.unwrap();
        assert_eq!(next.spend(1, Some(set)), (CreditSpend::Exhausted { remaining: 0 }, None));
        let (out, refilled) = next.spend(2, Some(due));
        assert_eq!(out, CreditSpend::Spent { remaining: 1 });
        let refilled = refilled.unwrap();
        assert_eq!(refilled.refilled_at, Some(due));
        assert_eq!(refilled.spend(2, Some(due)).0, CreditSpend::Exhausted { remaining: 1 }, "not twice");
        assert_eq!(next.spend(4, Some(due)), (CreditSpend::Exhausted { remaining: 3 }, None));
        let plain = Credits::new(5).unwrap();
        assert_eq!(plain.spend(2, Some(due)).0, CreditSpend::Spent { remaining: 3 }, "no refill");
    }

    #[test]
    fn json_shape() {
        let c =
            Credits::new(10).unwrap().refill(Refill::new(10, RefillPeriod::Daily).unwrap(), t("2026-01-01T00:00:00Z"));
        let v = serde_json::to_value(c).unwrap();
        assert_eq!(v["remaining"], 10);
        assert_eq!(v["refill"]["period"], "daily");
        assert_eq!(v["refill"]["atSecond"], 0);
        assert_eq!(serde_json::from_value::<Credits>(v).unwrap(), c);
    }
}
