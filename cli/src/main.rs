//! `keyctl` — manage service-account API keys from a terminal, the way the
//! source documents' `yc iam api-key …` commands do.
//!
//! ```text
//! cargo install --path cli      # from the workspace root
//! keyctl --help
//! ```
//!
//! | command | does |
//! |---|---|
//! | `create (--service-account-id ID \| --service-account-name NAME [--folder-id F \| --folder-name N]) [--create-service-account] [--description D] [--scopes a,b] [--expires-at 2030-01-01T00:00:00Z] [--disabled]` and the control flags ([`controls`]) | makes a key and prints the `api_key.yaml` shape **with the secret, once** |
//! | `list (--service-account-id ID \| --service-account-name NAME) [--limit N] [--page-token ID]` | ID, CREATED AT, LAST USED AT, SCOPES, EXPIRES AT, MASKED KEY (`****` + last six characters), STATUS; ENABLED and CONTROLS when a listed key is disabled or has controls |
//! | `list --external-id ID` / `list --expiring-within 7d` | across service accounts: the keys of one external owner id; the active keys expiring within the window |
//! | `get ID` | one key (no secret, no digest) |
//! | `revoke ID` | the key is never accepted again but stays listed |
//! | `delete ID` | removes the key |
//! | `reissue ID [--grace 1h]` | a new secret for the same owner, scopes and expiry; the old key is revoked now (`--grace 0`, the default) or stays valid for the grace period (`30s`, `10m`, `1h`, `2d`) |
//! | `list-scopes` | the scope catalog |
//! | `import --service-account-id ID [--description D] [--scopes a,b] [--expires-at T]` | stores the digest of an existing secret read from stdin (one trailing newline trimmed; never echoed) |
//! | `scan PATH… [--all] [--check] [--revoke [--yes]]` | finds leaked keys in files, folders (`.gitignore` respected unless `--all`) and stdin (`-`); prints `path:line:column  key-id  masked`, never a secret; exit 0 none found, 1 found, 2 bad input ([`scan`]) |
//! | `verify [--header VALUE] [--scope S] [--client-ip IP]` | checks an `Authorization` header value (from stdin unless `--header`); exit 0 and the key's id, service account, scopes and credits left when valid; spends no credits |
//! | `service-account\|folder\|cloud\|organization create\|list\|get\|update\|delete` | resources ([`resources::commands`]): `--name`, `--description`, `--labels k=v,…`; get, update and delete by `--id` or `--name` |
//! | `access-policy bind\|unbind\|list\|templates` | access policies on an organization, cloud or folder ([`resources::policy`]) |
//! | `serve [--listen 127.0.0.1:8080]` | the key service: `/v1/authorize` (forward auth), `/healthz`, `/readyz`, `/metrics` |
//!
//! `--format yaml|json|table` chooses the output; the default is `table` for
//! the `list` commands and `yaml` for everything else.
//!
//! Where the store keeps resources (SQLite, PostgreSQL), a key belongs to a
//! service account that exists and the access policies on its path apply
//! to `create`, `import`, `reissue` and re-dating `update` ([`resources`]).
//!
//! # Store and pepper
//!
//! The store is `--database-url` or `API_KEYS_DATABASE_URL`: `sqlite:PATH`,
//! `postgres://…[?schema=NAME]` or `redis://…[?prefix=NAME]`; the default is
//! `sqlite://api-keys.db?mode=rwc`, a file in the working directory. The
//! pepper is `API_KEYS_PEPPER` (base64, at least 32 bytes; version
//! `API_KEYS_PEPPER_VERSION`, default 1). Without it, a SQLite database gets
//! a pepper file beside it (`api-keys.db.pepper`, mode 0600), created on
//! first use with a warning; PostgreSQL and Redis need `API_KEYS_PEPPER` for
//! the commands that digest secrets (`create`, `reissue`, `import`,
//! `verify`, `serve`). An empty variable counts as unset. The rules live in
//! [`mod@env`] and [`pepper`]; the URL → store mapping is the library's
//! ([`api_keys::store::any`]).
//!
//! `keyctl serve` ([`serve`]) verifies the keys for reverse proxies and
//! applications; for PostgreSQL and Redis every write of the other commands
//! is announced on the store's invalidation channel, so caching nodes drop a
//! revoked key at once.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (`verify`: the key is valid) |
//! | 1 | `verify` rejected the key; any other failure |
//! | 2 | bad input or configuration (clap's usage errors are 2 as well) |
//! | 3 | no such key or resource |
//! | 4 | refused: policy (access policies included), conflict (revoked or already reissued key, a taken name, a non-empty folder), duplicate import |
//! | 5 | the store is unavailable |
//!
//! Errors go to stderr. Secrets are printed only by `create` and `reissue`,
//! once; digests never.

mod catalog;
mod context;
mod controls;
mod env;
mod failure;
mod files;
mod input;
mod pepper;
mod render;
mod resources;
mod scan;
mod serve;
mod update;

use std::process::ExitCode;
use std::time::Duration;

use api_keys::access_policy::LifetimeLimits;
use api_keys::controls::ExternalId;
use api_keys::resource::{ResourceKind, ResourceName, ResourceRef};
use api_keys::store::any;
use api_keys::{
    ClientClass, CreateRequest, KeyId, KeyInfo, PageRequest, Secret, ServiceAccountId, Timestamp, VerifyContext,
};
use clap::{Args, Parser, Subcommand};
use context::{Context, database_url, open_store, sqlite_database};
use failure::{BAD_INPUT, Failure, NOT_FOUND, OTHER, UNAVAILABLE, chain, manage_failure, setup_failure, store_failure};
use input::{parse_duration, read_stdin};
use render::{Format, emit};
use resources::commands::ResourceAction;
use resources::policy::PolicyAction;
use resources::{AccountArgs, FolderArgs, OnMissing};
use zeroize::Zeroizing;

const AFTER_HELP: &str = "\
Environment:
  API_KEYS_DATABASE_URL    the store (same as --database-url)
  API_KEYS_PEPPER          the pepper, base64 of at least 32 bytes; without it a SQLite
                           database gets a pepper file beside it (api-keys.db.pepper, mode 0600)
  API_KEYS_PEPPER_VERSION  the pepper's version number (default 1)
  API_KEYS_FOLDER_ID       the folder of --service-account-name and `keyctl service-account` when
                           no --folder-id or --folder-name is given (default: the default folder)
  API_KEYS_LISTEN          serve: the listen address (same as --listen; default 127.0.0.1:8080)
  API_KEYS_TRUSTED_PROXIES serve: trusted proxy ranges, comma-separated (same as --trusted-proxy)
  API_KEYS_PROXY_HEADER    serve: forwarded or x-forwarded-for (same as --proxy-header)
  API_KEYS_RATE_LIMIT_REDIS serve: a Redis for rate limits shared by all nodes (same as --rate-limit-redis)
  API_KEYS_CACHE           serve: `off` turns the PostgreSQL/Redis record cache off
  API_KEYS_CACHE_TTL       serve: how long a cached record is used unchecked (default 5s)
  API_KEYS_CACHE_MAX_STALENESS
                           serve: the longest a change made elsewhere can go unseen if its
                           invalidation message is lost (default 30s)
  API_KEYS_CACHE_MAX_ENTRIES
                           serve: the most entries the record cache holds (default 100000)
  API_KEYS_GITHUB_KEYS_FILE
                           serve: GitHub's secret-scanning public keys (the JSON of
                           api.github.com/meta/public_keys/secret_scanning); turns on
                           POST /v1/secret-scanning/github (off without it)
  API_KEYS_GITHUB_LEAK_ACTION
                           serve: `revoke` (default) or `record` for reported keys
  An empty variable counts as unset.

Exit codes:
  0  success (verify: the key is valid)
  1  verify rejected the key; any other failure
  2  bad input or configuration (including usage errors)
  3  no such key or resource
  4  refused: policy (access policies included), conflict (revoked or already reissued key,
     a taken name, a non-empty folder), duplicate import
  5  the store is unavailable";

/// Manage service-account API keys (like `yc iam api-key`).
#[derive(Debug, Parser)]
#[command(name = "keyctl", version, after_help = AFTER_HELP)]
struct Cli {
    /// Where keys are kept: sqlite:PATH, postgres://…[?schema=NAME] or redis://…[?prefix=NAME]
    /// [env: API_KEYS_DATABASE_URL] [default: sqlite://api-keys.db?mode=rwc].
    #[arg(long, global = true)]
    database_url: Option<String>,

    /// Output format [default: table for `list`, yaml otherwise].
    #[arg(long, global = true, value_enum)]
    format: Option<Format>,

    #[command(subcommand)]
    command: Command,
}

/// Fields of a new key (`create`, `import`).
#[derive(Debug, Args)]
struct NewKey {
    /// The service account that owns the key (--service-account-id or --service-account-name).
    #[command(flatten)]
    account: AccountArgs,
    /// Create the service account if it does not exist (by name: in the folder; by id: under that id).
    #[arg(long)]
    create_service_account: bool,
    /// Free text (at most 256 characters).
    #[arg(long, default_value = "")]
    description: String,
    /// Comma-separated scopes [default: the catalog's default set; see `list-scopes`].
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// Expiry in RFC 3339, e.g. 2030-01-01T00:00:00Z [default: never].
    #[arg(long)]
    expires_at: Option<Timestamp>,
    /// Create the key disabled (refused until `keyctl update ID --enable`).
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    controls: controls::ControlArgs,
}

impl NewKey {
    /// The account's id, and whether this run created the account.
    async fn account(&self, cx: &Context) -> Result<(ServiceAccountId, bool), Failure> {
        let on_missing = if self.create_service_account { OnMissing::Create } else { OnMissing::Refuse };
        self.account.resolve(cx, on_missing).await
    }

    fn request(self, account: &ServiceAccountId) -> Result<CreateRequest, Failure> {
        let mut request = CreateRequest::new(account.as_str()).description(self.description).enabled(!self.disabled);
        if let Some(scopes) = self.scopes {
            request = request.scopes(scopes);
        }
        if let Some(t) = self.expires_at {
            request = request.expires_at(t);
        }
        self.controls.apply_to_create(request)
    }
}

/// Which keys `list` shows: one service account's, or (across accounts)
/// those of one external owner id or those expiring soon.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ListSelection {
    /// The service account, by id.
    #[arg(long)]
    service_account_id: Option<String>,
    /// The service account, by name in the folder (--folder-id, --folder-name, API_KEYS_FOLDER_ID or the
    /// default folder).
    #[arg(long, value_name = "NAME", value_parser = resources::parse_name)]
    service_account_name: Option<ResourceName>,
    /// The keys whose external owner id is ID, across service accounts.
    #[arg(long, value_name = "ID")]
    external_id: Option<ExternalId>,
    /// Active keys expiring between now and now + this (30s, 10m, 12h, 7d), across service accounts.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expiring_within: Option<Duration>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a key; prints it with its secret, which is shown only this once.
    Create(NewKey),
    /// List a service account's keys (masked), or across service accounts those of one external
    /// owner id (--external-id) or those expiring soon (--expiring-within 7d).
    List {
        #[command(flatten)]
        selection: ListSelection,
        /// Where --service-account-name is looked up.
        #[command(flatten)]
        folder: FolderArgs,
        /// Keys per page.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after this key id (the `next_page_token` of the previous page).
        #[arg(long)]
        page_token: Option<KeyId>,
    },
    /// Show one key (never its secret).
    Get {
        /// The key id.
        id: KeyId,
    },
    /// Revoke a key: it is never accepted again but stays listed.
    Revoke {
        /// The key id.
        id: KeyId,
    },
    /// Delete a key.
    Delete {
        /// The key id.
        id: KeyId,
    },
    /// Give a key a new secret (after a compromise); prints it once.
    Reissue {
        /// The key id.
        id: KeyId,
        /// How long the old secret keeps working: 0 (revoke now), or a number with s, m, h or d.
        #[arg(long, default_value = "0", value_parser = parse_duration)]
        grace: Duration,
    },
    /// Change a key's description, scopes, expiry, enabled flag (--disable, --enable) or controls; prints
    /// the updated key.
    Update(update::UpdateArgs),
    /// Show a key's operations log (who changed what, when), newest first;
    /// also for a deleted key.
    Operations(update::OperationsArgs),
    /// List the scopes a key can have.
    ListScopes,
    /// Import an existing secret read from stdin (one trailing newline is trimmed).
    Import(NewKey),
    /// Serve keys to reverse proxies and applications: /v1/authorize (forward auth), /healthz,
    /// /readyz and /metrics, over the same store and pepper as the other commands.
    ///
    /// For PostgreSQL and Redis the node caches records and listens on the store's
    /// invalidation channel (API_KEYS_CACHE=off, API_KEYS_CACHE_TTL,
    /// API_KEYS_CACHE_MAX_STALENESS). SIGTERM or Ctrl-C drains requests and writes
    /// pending last-used times.
    Serve {
        /// Address to listen on, IP:PORT [env: API_KEYS_LISTEN] [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// A reverse proxy's address range (CIDR or address) whose forwarding header gives
        /// the client address for keys with an IP allow-list; repeatable. The proxy must
        /// append the address it received the request from to that header, or overwrite
        /// the header with it (nginx: `proxy_set_header X-Forwarded-For
        /// $proxy_add_x_forwarded_for;` also in the auth_request location); a proxy that
        /// passes the client's own header on lets the client choose its address
        /// [env: API_KEYS_TRUSTED_PROXIES, comma-separated] [default: none: the peer address].
        #[arg(long = "trusted-proxy", value_name = "CIDR")]
        trusted_proxy: Vec<String>,
        /// The header trusted proxies set: forwarded or x-forwarded-for; the proxy appends
        /// to it or overwrites it, as for --trusted-proxy (nginx for forwarded:
        /// `proxy_set_header Forwarded "for=$remote_addr";`, IPv6 bracketed and quoted)
        /// [env: API_KEYS_PROXY_HEADER] [default: x-forwarded-for].
        #[arg(long = "proxy-header", value_name = "HEADER")]
        proxy_header: Option<String>,
        /// A Redis (redis://…) where keys' rate limits are counted for all nodes
        /// [env: API_KEYS_RATE_LIMIT_REDIS] [default: the store when it is Redis, else
        /// per node in memory].
        #[arg(long = "rate-limit-redis", value_name = "URL")]
        rate_limit_redis: Option<String>,
        /// `/metrics` on its own listener and the Redis durability check.
        #[command(flatten)]
        options: serve::ServeOptions,
        /// TLS, the public address, timeouts and the connection cap.
        #[command(flatten)]
        listener: serve::ListenerArgs,
    },
    /// Find leaked keys in files, folders and stdin (`-`); exit 0 when none are found, 1 when
    /// keys are found, 2 on bad input.
    ///
    /// Prints `path:line:column  key-id  masked` per key (never the secret), or one document
    /// with --format json or yaml. .gitignore and .ignore are respected unless --all; every file is
    /// scanned, binaries included, and UTF-16 files (by their byte-order mark) as text; links, pipes
    /// and devices inside folders are skipped and named, and read when named on the command line.
    /// --check adds each key's status from the store (active, expired, revoked,
    /// unknown); --revoke revokes the found keys that are ours, after printing them.
    Scan(scan::ScanArgs),
    /// Service accounts, the owners of keys (like `yc iam service-account`): create, list, get,
    /// update, delete (with its keys).
    #[command(subcommand)]
    ServiceAccount(ResourceAction),
    /// Folders, which hold service accounts (like `yc resource-manager folder`).
    #[command(subcommand)]
    Folder(ResourceAction),
    /// Clouds, which hold folders (like `yc resource-manager cloud`).
    #[command(subcommand)]
    Cloud(ResourceAction),
    /// Organizations, which hold clouds (like `yc organization-manager organization`).
    #[command(subcommand)]
    Organization(ResourceAction),
    /// Access policies on an organization, cloud or folder, which forbid or limit the keys of
    /// every service account below: bind, unbind, list, templates. A refusal exits 4.
    #[command(subcommand)]
    AccessPolicy(PolicyAction),
    /// Check an `Authorization` header value; exit 0 if the key is valid.
    ///
    /// Reads the value (`Api-Key <key>`) from stdin unless --header is given
    /// (a command-line argument is visible to other local users; prefer
    /// stdin). An operator check is not a use: last_used_at is not updated.
    Verify {
        /// The header value, instead of reading it from stdin.
        #[arg(long)]
        header: Option<String>,
        /// A scope the key must grant (directly or through an umbrella scope).
        #[arg(long)]
        scope: Option<String>,
        /// Check as if the request came from this address (a key with an IP allow-list is refused
        /// without one).
        #[arg(long, value_name = "IP")]
        client_ip: Option<std::net::IpAddr>,
    },
}

impl Command {
    fn default_format(&self) -> Format {
        let table = match self {
            Self::List { .. } | Self::Operations(_) => true,
            Self::AccessPolicy(a) => a.is_listing(),
            _ => self.resource().is_some_and(|(_, a)| a.is_list()),
        };
        if table { Format::Table } else { Format::Yaml }
    }

    /// The kind and action of a resource command.
    fn resource(&self) -> Option<(ResourceKind, &ResourceAction)> {
        match self {
            Self::ServiceAccount(a) => Some((ResourceKind::ServiceAccount, a)),
            Self::Folder(a) => Some((ResourceKind::Folder, a)),
            Self::Cloud(a) => Some((ResourceKind::Cloud, a)),
            Self::Organization(a) => Some((ResourceKind::Organization, a)),
            _ => None,
        }
    }

    /// Whether the command may bring a new SQLite database into being (a
    /// first key, or a service that will create keys). Every other command
    /// on a database file that does not exist says so and creates nothing.
    fn creates_database(&self) -> bool {
        matches!(
            self,
            Self::Create(_) | Self::Import(_) | Self::Serve { .. } | Self::AccessPolicy(PolicyAction::Bind { .. })
        ) || self.resource().is_some_and(|(_, a)| a.is_create())
    }

    /// Whether the command digests secrets, so it cannot run without a pepper.
    fn needs_pepper(&self) -> bool {
        matches!(
            self,
            Self::Create(_)
                | Self::Reissue { .. }
                | Self::Import(_)
                | Self::Verify { .. }
                | Self::Serve { .. }
                | Self::Update(_)
        )
    }
}

/// A command other than create/import on a SQLite database file that does
/// not exist: say so, create nothing (no database, no pepper file).
fn without_database(command: &Command, format: Format, database: &std::path::Path) -> Result<(), Failure> {
    let none = format!("no key database at {} (nothing was created; `keyctl create` makes one)", database.display());
    match command {
        Command::List { .. } => {
            eprintln!("keyctl: {none}");
            emit(render::keys(format, &[], None, Timestamp::now()))
        }
        Command::Verify { .. } => Err(Failure::new(OTHER, format!("rejected: invalid_token (401); {none}"))),
        _ => Err(Failure::new(NOT_FOUND, none)),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let format = cli.format.unwrap_or_else(|| cli.command.default_format());
    if let Command::ListScopes = cli.command {
        return emit(render::scopes(format, catalog::yandex_cloud().list()));
    }
    if let Command::AccessPolicy(PolicyAction::Templates) = cli.command {
        return resources::policy::templates(format);
    }
    let url = database_url(cli.database_url);
    if let Command::Scan(args) = cli.command {
        return scan::run(args, cli.format, &url).await;
    }
    if !cli.command.creates_database()
        && let Some(database) = sqlite_database(&url)?
        && !files::exists(&database)
    {
        return without_database(&cli.command, format, &database);
    }
    if let Command::Serve { listen, trusted_proxy, proxy_header, rate_limit_redis, options, listener } = cli.command {
        let addr = serve::listen_address(listen)?;
        let listening = serve::Listening::resolve(listener)?;
        let proxies = serve::Proxies::resolve(trusted_proxy, proxy_header)?;
        let limits = serve::rate_limit_store(rate_limit_redis, &url);
        let cache = serve::CacheSettings::from_env()?;
        let (store, peppers) = open_store(&url, true).await?;
        let peppers = peppers.ok_or_else(|| Failure::new(BAD_INPUT, "no pepper configured"))?;
        let closer = store.clone();
        let node = serve::Node::new(store, &url, peppers, cache).await?;
        node.print_demo_key().await?;
        let served = serve::run(node, addr, proxies, limits, options, listening).await;
        closer.close().await;
        return served;
    }
    if any::Backend::of(&url).map_err(|e| setup_failure(&e))? == any::Backend::Memory {
        return Err(Failure::new(
            BAD_INPUT,
            "the memory: store lives only inside `keyctl serve` (which prints a demo key); \
             other commands need sqlite:, postgres: or redis:",
        ));
    }
    let cx = Context::open(&url, cli.command.needs_pepper()).await?;
    let result = command(cli.command, format, &cx).await;
    cx.warn_unpublished();
    // Checkpoints SQLite's write-ahead log: a copy of
    // the database file alone then holds every change just made.
    cx.store.inner().close().await;
    result
}

/// The credits a verified key has left (`None` without credits), as the
/// store holds them; a refill that is due counts as done.
async fn credits_remaining(cx: &Context, id: &KeyId, now: Timestamp) -> Result<Option<u64>, Failure> {
    let key = cx.directory().get(id).await.map_err(|e| manage_failure(&e))?;
    Ok(key.controls.and_then(|c| c.credits).map(|c| c.available(c.refill.map(|r| r.last_instant(now)))))
}

/// One page of the keys `list` selects.
async fn list_page(
    cx: &Context,
    selection: ListSelection,
    folder: FolderArgs,
    page: PageRequest,
) -> Result<api_keys::Page<KeyInfo>, Failure> {
    let keys = cx.directory();
    let listed = match selection {
        ListSelection { external_id: Some(id), .. } => keys.list_by_external_id(&id, page).await,
        ListSelection { expiring_within: Some(window), .. } => keys.expiring_within(window, page).await,
        ListSelection { service_account_id: Some(sa), .. } => {
            // Listing needs no account: the keys of a deleted one are gone, of an unknown one none.
            let sa = ServiceAccountId::new(&sa)
                .map_err(|e| Failure::new(BAD_INPUT, format!("--service-account-id: {e}")))?;
            keys.list(sa.as_str(), page).await
        }
        ListSelection { service_account_name: Some(name), .. } => {
            let account = AccountArgs { service_account_name: Some(name), folder, ..AccountArgs::default() };
            let (sa, _) = account.resolve(cx, OnMissing::Refuse).await?;
            keys.list(sa.as_str(), page).await
        }
        ListSelection { .. } => {
            return Err(Failure::new(
                BAD_INPUT,
                "give --service-account-id, --service-account-name, --external-id or --expiring-within",
            ));
        }
    };
    listed.map_err(|e| manage_failure(&e))
}

/// Makes a key for `new`'s service account with `make` (`create` or
/// `import`). An account this run created is deleted again when the key is
/// refused, so a refusal leaves nothing behind.
async fn new_key<T, F, Fut>(cx: &Context, new: NewKey, make: F) -> Result<T, Failure>
where
    F: FnOnce(CreateRequest) -> Fut,
    Fut: std::future::Future<Output = Result<T, api_keys::ManageError>>,
{
    let (account, created) = new.account(cx).await?;
    let made = match new.request(&account) {
        Ok(request) => make(request).await.map_err(|e| manage_failure(&e)),
        Err(f) => Err(f),
    };
    if made.is_err() && created {
        match cx.directory().delete_resource(&ResourceRef::ServiceAccount(account.clone())).await {
            Ok(_) => eprintln!("keyctl: no key was made; service account {account} was removed again"),
            Err(e) => eprintln!("keyctl: no key was made; service account {account} stays: {}", chain(&e)),
        }
    }
    made
}

/// Runs one of the key-management commands.
async fn command(command: Command, format: Format, cx: &Context) -> Result<(), Failure> {
    let now = Timestamp::now();
    match command {
        Command::Create(new) => {
            let manager = cx.manager()?;
            let created = new_key(cx, new, |request| manager.create(request)).await?;
            emit(render::created(format, &created))?;
            eprintln!("keyctl: save the secret in a secure location now: it will not be shown again.");
        }
        Command::List { selection, folder, limit, page_token } => {
            let page = page_token.map_or(PageRequest::first(limit), |after| PageRequest::after(limit, after));
            let page = list_page(cx, selection, folder, page).await?;
            let infos = page.items;
            let next = page.next.map(|id| id.to_string());
            if format == Format::Table
                && let Some(next) = &next
            {
                eprintln!("keyctl: more keys: run again with --page-token {next}");
            }
            emit(render::keys(format, &infos, next, now))?;
        }
        Command::Get { id } => {
            let key = cx.directory().get(&id).await.map_err(|e| manage_failure(&e))?;
            emit(render::key(format, &key, now))?;
        }
        Command::Revoke { id } => {
            update::revoke(&id, cx).await?;
            eprintln!("keyctl: key {id} revoked");
        }
        Command::Delete { id } => {
            update::delete(&id, cx).await?;
            eprintln!("keyctl: key {id} deleted");
        }
        Command::Reissue { id, grace } => {
            let manager = cx.manager()?;
            let created = manager.reissue(&id, grace).await.map_err(|e| manage_failure(&e))?;
            emit(render::created(format, &created))?;
            let old = match manager.get(&id).await {
                Ok(old) if grace.is_zero() => format!("the old key {} is revoked", old.id),
                Ok(old) => match old.expires_at {
                    Some(t) => format!("the old key {} stays valid until {t}", old.id),
                    None => format!("the old key {} stays valid for the grace period", old.id),
                },
                Err(_) => format!("the old key {id} was updated"),
            };
            eprintln!(
                "keyctl: key {id} reissued as {}; {old}. Save the new secret in a secure location now: it will \
                 not be shown again.",
                created.api_key.id
            );
        }
        Command::Import(new) => {
            let manager = cx.manager()?;
            let raw = read_stdin("Secret to import")?;
            let text = std::str::from_utf8(&raw)
                .map_err(|_| Failure::new(BAD_INPUT, "the secret read from stdin is not text"))?;
            let secret = Secret::from(text.to_owned());
            let info = new_key(cx, new, |request| manager.import(request, &secret)).await?;
            emit(render::key(format, &info, now))?;
            eprintln!("keyctl: imported as key {}; only its digest is stored", info.id);
        }
        Command::Verify { header, scope, client_ip } => {
            let manager = cx.manager()?;
            let required = match scope {
                Some(s) => Some(
                    manager.catalog().requirement(&s).map_err(|e| Failure::new(BAD_INPUT, format!("--scope: {e}")))?,
                ),
                None => None,
            };
            let value = match header {
                Some(h) => Zeroizing::new(h.into_bytes()),
                None => read_stdin("Authorization header value (Api-Key <key>)")?,
            };
            // The operator checks the value given, imported keys included,
            // under the maximum-lifetime policies as `keyctl serve` applies them.
            let limits = LifetimeLimits::new();
            limits.refresh(&*cx.store).await.map_err(|e| store_failure(&e))?;
            let verifier = manager.verifier().accept_imported(true).lifetime_limits(limits).build();
            // An operator check spends no credits (cost 0) and is not a use.
            let ctx = VerifyContext::new().required(required.as_ref()).client_ip(client_ip).cost(0);
            match verifier.verify_with(&value, &ctx).await {
                Ok(principal) => {
                    let credits = credits_remaining(cx, principal.key_id(), now).await?;
                    emit(render::principal(format, &principal, credits))?;
                }
                Err(e) => {
                    let class = e.client_class();
                    let (code, name) = match class {
                        ClientClass::NoCredentials => (OTHER, "no credentials (401, bare challenge)"),
                        ClientClass::InvalidRequest => (OTHER, "invalid_request (400)"),
                        ClientClass::InvalidToken => (OTHER, "invalid_token (401)"),
                        ClientClass::InsufficientScope => (OTHER, "insufficient_scope (403)"),
                        ClientClass::Forbidden => (OTHER, "forbidden: client address not allowed (403)"),
                        ClientClass::UsageExceeded => (OTHER, "usage exceeded (429)"),
                        ClientClass::RateLimited => (OTHER, "rate limited (429)"),
                        ClientClass::Unavailable => (UNAVAILABLE, "unavailable (503)"),
                        _ => (OTHER, "rejected"),
                    };
                    let mut message = format!("rejected: {name}; log-only reason: {}", chain(&e));
                    if class == ClientClass::NoCredentials {
                        message.push_str("\nkeyctl: hint: the value must be `Api-Key <key>`");
                    }
                    return Err(Failure::new(code, message));
                }
            }
        }
        Command::Update(args) => update::update(args, format, cx).await?,
        Command::Operations(args) => update::operations(args, format, cx).await?,
        Command::ListScopes => return emit(render::scopes(format, catalog::yandex_cloud().list())),
        Command::ServiceAccount(a) => resources::commands::run(ResourceKind::ServiceAccount, a, format, cx).await?,
        Command::Folder(a) => resources::commands::run(ResourceKind::Folder, a, format, cx).await?,
        Command::Cloud(a) => resources::commands::run(ResourceKind::Cloud, a, format, cx).await?,
        Command::Organization(a) => resources::commands::run(ResourceKind::Organization, a, format, cx).await?,
        Command::AccessPolicy(a) => resources::policy::run(a, format, cx).await?,
        Command::Serve { .. } | Command::Scan(_) => {
            return Err(Failure::new(OTHER, "serve and scan are not key-management commands"));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = if matches!(cli.command, Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyctl: cannot start the async runtime: {e}");
            return ExitCode::from(OTHER);
        }
    };
    if matches!(cli.command, Command::Serve { .. }) {
        init_logging();
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("keyctl: {}", f.message());
            ExitCode::from(f.code())
        }
    }
}

/// `keyctl serve` logs to stderr through `tracing`; `RUST_LOG` filters it
/// (default: info, with the library's per-request rejections at warn).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,api_keys=warn"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
