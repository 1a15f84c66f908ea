//! `keyctl update` and `keyctl operations`: change a key's description,
//! scopes, expiry, enabled flag or controls (one atomic store operation, logged and announced to
//! the caching nodes like a revoke), and show a key's operations log.

use api_keys::{KeyId, Operation, OperationCursor, PageRequest, Timestamp, UpdateRequest};
use clap::Args;
use serde::Serialize;

use crate::context::Context;
use crate::failure::{BAD_INPUT, Failure, manage_failure};
use crate::render::{self, Format, emit};

/// `keyctl revoke`, logged (no pepper needed: through the directory).
pub(crate) async fn revoke(id: &KeyId, cx: &Context) -> Result<(), Failure> {
    cx.directory().revoke(id).await.map(drop).map_err(|e| manage_failure(&e))
}

/// `keyctl delete`, logged (the log outlives the key).
pub(crate) async fn delete(id: &KeyId, cx: &Context) -> Result<(), Failure> {
    cx.directory().delete(id).await.map(drop).map_err(|e| manage_failure(&e))
}

/// `keyctl update ID [--description D] [--scopes a,b] [--expires-at T | --no-expiry] [--disable | --enable]`
/// and the control flags of [`crate::controls`].
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The key id.
    id: KeyId,
    /// The new description (`""` clears it).
    #[arg(long)]
    description: Option<String>,
    /// The new scopes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// The new expiry, RFC 3339 (e.g. 2030-01-01T00:00:00Z), in the future.
    #[arg(long, conflicts_with = "no_expiry")]
    expires_at: Option<Timestamp>,
    /// Remove the expiry: the key never expires.
    #[arg(long)]
    no_expiry: bool,
    #[command(flatten)]
    controls: crate::controls::UpdateControlArgs,
}

impl UpdateArgs {
    fn request(&self) -> Result<UpdateRequest, Failure> {
        let mut request = UpdateRequest::new();
        if let Some(d) = &self.description {
            request = request.description(d.clone());
        }
        if let Some(s) = &self.scopes {
            let scopes: Vec<String> = s.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if scopes.is_empty() {
                // Never read as "reset to the catalog's defaults": that would widen the key.
                return Err(Failure::new(BAD_INPUT, "--scopes needs at least one scope"));
            }
            request = request.scopes(scopes);
        }
        if let Some(t) = self.expires_at {
            request = request.expires_at(Some(t));
        } else if self.no_expiry {
            request = request.expires_at(None);
        }
        self.controls.apply(request)
    }
}

/// Runs `update`: prints the updated key.
pub(crate) async fn update(args: UpdateArgs, format: Format, cx: &Context) -> Result<(), Failure> {
    let request = args.request()?;
    if request.is_empty() {
        return Err(Failure::new(
            BAD_INPUT,
            "nothing to update: give --description, --scopes, --expires-at, --no-expiry, --disable, --enable, \
             a control flag (--credits, --rate-limit, --allow-ip, --meta, --external-id) or a clearing one \
             (--no-credits, --no-rate-limits, --no-allow-ip, --no-meta, --no-external-id)",
        ));
    }
    let (info, _operation) = cx.directory().update(&args.id, request).await.map_err(|e| manage_failure(&e))?;
    let format = if format == Format::Table { Format::Yaml } else { format };
    emit(render::key(format, &info, Timestamp::now()))
}

/// `keyctl operations ID [--limit N] [--page-token T]`.
#[derive(Debug, Args)]
pub(crate) struct OperationsArgs {
    /// The key id (a deleted key's log is still shown).
    id: KeyId,
    /// Entries per page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after this entry (the `next_page_token` of the previous page).
    #[arg(long)]
    page_token: Option<u64>,
}

/// What `operations` prints as YAML or JSON.
#[derive(Serialize)]
struct Log<'a> {
    operations: &'a [Operation],
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<u64>,
}

/// Runs `operations`: the key's log, newest first.
pub(crate) async fn operations(args: OperationsArgs, format: Format, cx: &Context) -> Result<(), Failure> {
    let page = PageRequest::starting(args.limit, args.page_token.map(OperationCursor::new));
    let page = cx.directory().operations(&args.id, page).await.map_err(|e| manage_failure(&e))?;
    let next = page.next.map(OperationCursor::get);
    if format != Format::Table {
        return emit(render::structured(format, &Log { operations: &page.items, next_page_token: next }));
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|op| {
            vec![
                op.id.to_string(),
                op.kind.as_str().to_owned(),
                op.created_at.to_string(),
                op.actor.to_string(),
                serde_json::to_string(&op.changes).unwrap_or_default(),
            ]
        })
        .collect();
    let mut text = render::table(&["ID", "KIND", "CREATED AT", "CREATED BY", "CHANGES"], &rows);
    if let Some(n) = next {
        text.push_str(&format!("next page: --page-token {n}\n"));
    }
    emit(Ok(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        update: UpdateArgs,
    }

    fn request(args: &[&str]) -> Result<UpdateRequest, Failure> {
        let mut argv = vec!["keyctl", "aaaaaaaaaaaaaaaaaaaa"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map_err(|e| Failure::new(BAD_INPUT, e.to_string()))?.update.request()
    }

    #[test]
    fn an_update_changes_only_what_its_flags_name() {
        let only = request(&["--disable"]).ok().unwrap_or_default();
        assert_eq!((only.scopes, only.expires_at, only.enabled), (None, None, Some(false)), "nothing else touched");
        let only = request(&["--allow-ip", "10.0.0.0/8"]).ok().unwrap_or_default();
        assert_eq!((only.scopes, only.expires_at, only.description), (None, None, None));
        for empty in ["", ",", " , "] {
            assert!(request(&["--scopes", empty]).is_err(), "{empty:?} must not reset the scopes");
        }
        let named = request(&["--scopes", "yc.postbox.send, "]).ok().unwrap_or_default();
        assert_eq!(named.scopes, Some(vec!["yc.postbox.send".to_owned()]));
    }
}
