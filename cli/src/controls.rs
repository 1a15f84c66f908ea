//! The key-control flags of `keyctl create`, `import` and `update`:
//! `--credits N [--refill-daily N | --refill-monthly N] [--refill-at HH:MM]`,
//! `--rate-limit NAME=COUNT/PERIOD[:burst=N]` (repeatable), `--allow-ip
//! CIDR,…`, `--meta JSON`, `--external-id ID`; on `update` also `--disable`
//! / `--enable` and the clearing flags `--no-credits`, `--no-rate-limits`,
//! `--no-allow-ip`, `--no-meta`, `--no-external-id`.
//!
//! Each value is parsed by the library's own type ([`api_keys::controls`]),
//! so a bad value is a usage error (exit 2) naming the flag and the rule.

use api_keys::controls::{
    ControlError, Credits, ExternalId, IpAllowList, KeyControls, Metadata, RateLimit, RateLimits, Refill, RefillPeriod,
};
use api_keys::{CreateRequest, Timestamp, UpdateRequest};
use clap::Args;

use crate::failure::{BAD_INPUT, Failure};

/// Largest credit count a flag accepts ([`Credits::MAX`]).
const MAX_CREDITS: u64 = Credits::MAX;

/// `HH:MM` (UTC), as `--refill-at` takes it.
fn parse_time_of_day(text: &str) -> Result<(u8, u8), String> {
    const HELP: &str = "expected HH:MM in UTC, 00:00 to 23:59";
    let (h, m) = text.split_once(':').ok_or(HELP)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(HELP.to_owned());
    }
    let hour: u8 = h.parse().map_err(|_| HELP)?;
    let minute: u8 = m.parse().map_err(|_| HELP)?;
    if hour > 23 || minute > 59 { Err(HELP.to_owned()) } else { Ok((hour, minute)) }
}

/// The flags that set controls (shared by `create`, `import` and `update`).
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("refill").args(["refill_daily", "refill_monthly"])))]
pub(crate) struct ControlArgs {
    /// Usage credits: the key is refused (429, usage exceeded) once this many verifications spent them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS))]
    credits: Option<u64>,
    /// Refill the credits to N every day (at --refill-at, default 00:00 UTC).
    #[arg(long, value_name = "N", requires = "credits", value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS))]
    refill_daily: Option<u64>,
    /// Refill the credits to N on the first day of every month (at --refill-at, default 00:00 UTC).
    #[arg(long, value_name = "N", requires = "credits", value_parser = clap::value_parser!(u64).range(0..=MAX_CREDITS))]
    refill_monthly: Option<u64>,
    /// Time of day of the refill, HH:MM in UTC.
    #[arg(long, value_name = "HH:MM", requires = "refill", value_parser = parse_time_of_day)]
    refill_at: Option<(u8, u8)>,
    /// A named rate limit NAME=COUNT/PERIOD[:burst=N], e.g. api=100/1s:burst=20 (repeatable; per node).
    #[arg(long = "rate-limit", value_name = "LIMIT")]
    rate_limits: Vec<RateLimit>,
    /// Client addresses the key may be used from: comma-separated CIDR ranges or addresses (IPv4, IPv6).
    #[arg(long, value_name = "CIDR,…")]
    allow_ip: Option<IpAllowList>,
    /// Owner metadata: a JSON object of at most 4096 bytes, nested at most 8 levels.
    #[arg(long, value_name = "JSON", value_parser = Metadata::parse)]
    meta: Option<Metadata>,
    /// The application's own owner (customer, tenant) id, to list keys by.
    #[arg(long, value_name = "ID")]
    external_id: Option<ExternalId>,
}

impl ControlArgs {
    /// The credits the flags give (`None` without `--credits`).
    fn credits(&self, now: Timestamp) -> Result<Option<Credits>, Failure> {
        let Some(n) = self.credits else { return Ok(None) };
        let bad = |e: ControlError| Failure::new(BAD_INPUT, format!("--credits: {e}"));
        let credits = Credits::new(n).map_err(bad)?;
        let refill = match (self.refill_daily, self.refill_monthly) {
            (Some(amount), _) => Refill::new(amount, RefillPeriod::Daily),
            (None, Some(amount)) => Refill::new(amount, RefillPeriod::Monthly),
            (None, None) => return Ok(Some(credits)),
        };
        let mut refill = refill.map_err(bad)?;
        if let Some((h, m)) = self.refill_at {
            refill = refill.at(h, m).map_err(bad)?;
        }
        Ok(Some(credits.refill(refill, now)))
    }

    /// The rate limits the flags give (`None` without `--rate-limit`).
    fn rate_limits(&self) -> Result<Option<RateLimits>, Failure> {
        if self.rate_limits.is_empty() {
            return Ok(None);
        }
        RateLimits::new(self.rate_limits.iter().cloned())
            .map(Some)
            .map_err(|e| Failure::new(BAD_INPUT, format!("--rate-limit: {e}")))
    }

    /// The controls of a new key.
    fn controls(&self, now: Timestamp) -> Result<KeyControls, Failure> {
        let mut c = KeyControls::new();
        c.metadata.clone_from(&self.meta);
        c.external_id.clone_from(&self.external_id);
        c.allowed_ips.clone_from(&self.allow_ip);
        c.credits = self.credits(now)?;
        c.rate_limits = self.rate_limits()?;
        Ok(c)
    }

    /// Adds the controls to a create (or import) request.
    pub(crate) fn apply_to_create(&self, request: CreateRequest) -> Result<CreateRequest, Failure> {
        Ok(request.controls(self.controls(Timestamp::now())?))
    }

    /// Adds the controls set by flags to an update.
    pub(crate) fn apply_to_update(&self, mut request: UpdateRequest) -> Result<UpdateRequest, Failure> {
        let c = self.controls(Timestamp::now())?;
        if let Some(m) = c.metadata {
            request = request.metadata(m);
        }
        if let Some(id) = c.external_id {
            request = request.external_id(id);
        }
        if let Some(list) = c.allowed_ips {
            request = request.allowed_ips(list);
        }
        if let Some(credits) = c.credits {
            request = request.credits(credits);
        }
        if let Some(limits) = c.rate_limits {
            request = request.rate_limits(limits);
        }
        Ok(request)
    }
}

/// A change that clears one control.
type Clear = fn(UpdateRequest) -> UpdateRequest;

/// The flags of `update` that enable, disable or clear controls.
#[derive(Debug, Clone, Args)]
pub(crate) struct UpdateControlArgs {
    #[command(flatten)]
    set: ControlArgs,
    /// Disable the key: it is refused until `--enable` (unlike revoke, reversible).
    #[arg(long, conflicts_with = "enable")]
    disable: bool,
    /// Enable a disabled key again.
    #[arg(long)]
    enable: bool,
    /// Remove the usage credits (unlimited use).
    #[arg(long, conflicts_with = "credits")]
    no_credits: bool,
    /// Remove every rate limit.
    #[arg(long, conflicts_with = "rate_limits")]
    no_rate_limits: bool,
    /// Remove the IP allow-list (any address).
    #[arg(long, conflicts_with = "allow_ip")]
    no_allow_ip: bool,
    /// Remove the metadata.
    #[arg(long, conflicts_with = "meta")]
    no_meta: bool,
    /// Remove the external owner id.
    #[arg(long, conflicts_with = "external_id")]
    no_external_id: bool,
}

impl UpdateControlArgs {
    /// Adds these flags' changes to an update.
    pub(crate) fn apply(&self, mut request: UpdateRequest) -> Result<UpdateRequest, Failure> {
        request = self.set.apply_to_update(request)?;
        if self.disable {
            request = request.disable();
        }
        if self.enable {
            request = request.enable();
        }
        let clears: [(bool, Clear); 5] = [
            (self.no_credits, UpdateRequest::clear_credits),
            (self.no_rate_limits, UpdateRequest::clear_rate_limits),
            (self.no_allow_ip, UpdateRequest::clear_allowed_ips),
            (self.no_meta, UpdateRequest::clear_metadata),
            (self.no_external_id, UpdateRequest::clear_external_id),
        ];
        for (flag, clear) in clears {
            if flag {
                request = clear(request);
            }
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("06:30"), Ok((6, 30)));
        assert_eq!(parse_time_of_day("23:59"), Ok((23, 59)));
        for bad in ["", "6:30", "24:00", "12:60", "12-00", "ab:cd", "12:00:00"] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }
}
