//! `hearth serve`: open the store, create the first admin if needed, start the scheduler and the HTTP server,
//! tell systemd, and shut down gracefully on SIGTERM/SIGINT (drain, then end what is still running cleanly).

use crate::api::{self, AppState};
use crate::auth::{accounts, Authenticator};
use crate::batch_api::{self, runner::Runner, Batches};
use crate::config::Config;
use crate::housekeeping::Housekeeping;
use crate::inference::Inference;
use crate::ledger::Ledger;
use crate::metrics::energy::EnergyMeter;
use crate::metrics::sampler::Sampler;
use crate::metrics::Metrics;
use crate::models::ModelStore;
use crate::quota::Quota;
use crate::sched::{SchedConfig, Scheduler};
use crate::sd_notify;
use crate::store::{self, Store};
use actix_web::{web, App, HttpServer};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn database_url(cfg: &Config, state_dir: &Path) -> String {
    cfg.database_url
        .clone()
        .unwrap_or_else(|| store::sqlite_url(state_dir))
}

pub fn models_dir(cfg: &Config, state_dir: &Path) -> PathBuf {
    cfg.models_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("models"))
}

fn tls_config(tls: &crate::config::TlsConfig) -> Result<rustls::ServerConfig> {
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .with_context(|| format!("TLS: cannot open {}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(&tls.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("TLS: bad certificate file {}", tls.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "TLS: no certificate in {}",
        tls.cert.display()
    );
    let key = rustls_pemfile::private_key(&mut open(&tls.key)?)
        .with_context(|| format!("TLS: bad key file {}", tls.key.display()))?
        .with_context(|| format!("TLS: no private key in {}", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS: certificate and key do not match")
}

/// The registry, and — when `power.sampling` is on — the energy meter and its sampling thread (NVML is loaded
/// here at run time; no driver means no GPU series, never a failure).
fn start_metrics(power: &crate::config::PowerConfig) -> Result<(Arc<Metrics>, Option<Sampler>)> {
    if !power.sampling {
        return Ok((Metrics::new(None), None));
    }
    let nvml = nvml_wrapper::Nvml::init().ok().map(Arc::new);
    let meter = Arc::new(EnergyMeter::new(
        &power.sysfs_root,
        power.cpu_watts_estimate,
        nvml.clone(),
    ));
    if !meter.measures("cpu") {
        tracing::info!(sysfs = %power.sysfs_root.display(),
            "no readable RAPL energy counter and no power.cpu_watts_estimate: CPU requests carry no joules (hearth doctor explains)");
    }
    let metrics = Metrics::new(Some(meter.clone()));
    let sampler = Sampler::start(
        metrics.clone(),
        meter,
        nvml,
        &power.sysfs_root,
        power.interval,
    )
    .context("starting the power sampler")?;
    Ok((metrics, Some(sampler)))
}

pub fn run(cfg: Config, state_dir: PathBuf, bind: Option<SocketAddr>) -> Result<()> {
    actix_web::rt::System::new().block_on(serve(cfg, state_dir, bind))
}

async fn serve(cfg: Config, state_dir: PathBuf, bind: Option<SocketAddr>) -> Result<()> {
    cfg.check_files()?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    crate::paths::ensure_writable(&state_dir)?;
    let models = models_dir(&cfg, &state_dir);
    std::fs::create_dir_all(&models)
        .with_context(|| format!("cannot create the models directory {}", models.display()))?;
    let store = Store::connect(&database_url(&cfg, &state_dir))
        .await
        .context("opening the database")?;
    accounts::ensure_initial_admin(&store, &state_dir).await?;
    let (metrics, _sampler) = start_metrics(&cfg.power)?;
    let e = &cfg.engine;
    let sched = Scheduler::new(
        ModelStore::at(models),
        SchedConfig {
            threads: e.threads.unwrap_or_else(hearth_engine::default_threads),
            max_sequences: e.max_sequences,
            context: e.context,
            queue_depth: e.queue_depth,
            keep_alive: e.keep_alive,
            memory_budget: e.memory_budget,
            models: cfg.models.clone(),
            inventory: Arc::new(hearth_engine::devices::Inventory::detect()),
            metrics: metrics.clone(),
        },
    );
    for (name, _) in cfg.models.iter().filter(|(_, m)| m.preload) {
        let (sched, name) = (sched.clone(), name.clone());
        tokio::spawn(async move {
            match sched.load(&name).await {
                Ok(()) => tracing::info!(model = %name, "preloaded"),
                Err(e) => tracing::error!(model = %name, error = %e, "preload failed"),
            }
        });
    }
    let (ledger, ledger_task) = Ledger::start(store.clone());
    let tz = cfg.time_zone();
    let quota = Quota::new(store.clone(), tz.clone(), cfg.quota.clone(), None);
    quota.export_to(metrics.clone());
    let node = cfg
        .cluster
        .name
        .clone()
        .unwrap_or_else(|| node_name(&state_dir));
    match quota.serve_as(&node).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(requests = n, node = %node, "settled requests a previous process left running")
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "settling requests a previous process left running: {e}"
            ))
        }
    }
    let housekeeping = Arc::new(
        Housekeeping::start(store.clone(), tz, cfg.usage.retain_raw, node.clone())
            .await
            .map_err(|e| anyhow::anyhow!("starting scheduled jobs: {e}"))?,
    );
    let addr = bind.unwrap_or(cfg.bind);
    let shutdown_timeout = cfg.shutdown_timeout;
    let tls = cfg.tls.as_ref().map(tls_config).transpose()?;
    let auth = Authenticator::new(store.clone());
    let inference = Inference::new(sched.clone(), quota.clone(), ledger);
    let batches = Batches {
        store: store.clone(),
        quota: quota.clone(),
        auth: auth.clone(),
        signals: Arc::default(),
    };
    batch_api::runner::start(Runner {
        batches: batches.clone(),
        slots: cfg.engine.max_sequences,
        run_line: api::openai::batch_lines(auth.clone(), inference.clone()),
        node: node.clone(),
        lease: cfg.cluster.lease,
    });
    batch_api::cron::start(batches.clone());
    let router = match &cfg.cluster.secret {
        None => None,
        Some(secret) => Some(crate::cluster::Router::new(
            node.clone(),
            cfg.cluster.expire,
            crate::cluster::credential::Credential::new(secret),
            crate::cluster::forward::Client::new(cfg.cluster.ca.as_deref())?,
            store.clone(),
            sched.clone(),
        )),
    };
    let state = web::Data::new(AppState {
        config: cfg,
        state_dir,
        store: store.clone(),
        auth,
        sched: sched.clone(),
        inference,
        quota,
        housekeeping: housekeeping.clone(),
        history: crate::metrics::history::History::start(metrics.clone()),
        pulls: Arc::default(),
        metrics,
        batches,
        node: node.clone(),
        router,
    });
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(actix_web::middleware::from_fn(api::forward::route))
            .wrap(actix_web::middleware::from_fn(log_request))
            .wrap(security_headers())
            .configure(api::configure)
            .default_service(web::to(api::not_found))
    })
    .disable_signals()
    // Actix's own deadline sits past ours, so streams still get their final event after we cancel them.
    .shutdown_timeout(shutdown_timeout.as_secs() + 2);
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(addr, tls),
        None => server.bind(addr),
    }
    .with_context(|| format!("cannot listen on {addr}"))?;
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Other nodes reach this one at `cluster.url`, else at the address it listens on when that names one host.
    let advertised = state.config.cluster.url.clone().or_else(|| {
        let a = server.addrs().into_iter().next()?;
        (!a.ip().is_unspecified()).then(|| format!("{scheme}://{a}"))
    });
    if state.router.is_some() && advertised.is_none() {
        tracing::warn!(
            "cluster.secret is set but this node listens on every address and has no cluster.url: \
            other nodes cannot forward requests to it"
        );
    }
    let c = &state.config.cluster;
    let membership = crate::cluster::Membership {
        name: node,
        host: node_name(&state.state_dir),
        url: advertised,
        heartbeat: c.heartbeat,
        expire: c.expire,
        lease: c.lease,
    };
    crate::cluster::join(
        store.clone(),
        sched.clone(),
        state.metrics.clone(),
        membership,
    )
    .await?;
    for a in server.addrs() {
        tracing::info!(url = %format!("{scheme}://{a}"), "listening");
        // One line on stdout so scripts (and `make run`) can find the address, even with port 0.
        println!("hearth: listening on {scheme}://{a}");
    }
    let server = server.run();
    let handle = server.handle();
    sd_notify::notify("READY=1");
    if let Some(every) = sd_notify::watchdog_interval() {
        actix_web::rt::spawn(async move {
            loop {
                sd_notify::notify("WATCHDOG=1");
                tokio::time::sleep(every).await;
            }
        });
    }
    let signals = {
        let sched = sched.clone();
        let batch = state.batches.signals.clone();
        actix_web::rt::spawn(async move {
            let which = wait_for_signal().await;
            tracing::info!(
                signal = which,
                timeout_s = shutdown_timeout.as_secs_f64(),
                "shutting down"
            );
            sd_notify::notify("STOPPING=1");
            // No new batch lines start; running ones end with the scheduler and stay pending for the next start.
            batch.stop();
            let deadline = Instant::now() + shutdown_timeout;
            let stop = handle.stop(true);
            // Drain: in-flight requests finish on their own until the deadline; then whatever still runs is
            // ended as cancelled, so its stream closes with a final event rather than a cut connection.
            let sched2 = sched.clone();
            actix_web::rt::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                sched2.shutdown();
            });
            stop.await;
        })
    };
    server.await.context("HTTP server")?;
    signals.abort();
    state.batches.signals.stop();
    sched.shutdown();
    // Batch lines that finished (or were just cancelled) store their outcome before the runtime goes: a finished
    // line must not run again after the restart.
    if tokio::time::timeout(Duration::from_secs(10), state.batches.signals.drained())
        .await
        .is_err()
    {
        tracing::warn!("batch lines still running at exit will run again at the next start");
    }
    housekeeping.shutdown().await;
    // The ledger closes once the last job callback is gone (workers exit after `shutdown`).
    drop(state);
    if tokio::time::timeout(Duration::from_secs(5), ledger_task.close())
        .await
        .is_err()
    {
        tracing::warn!("usage rows still queued at exit were not written");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// This serving process's node: host name and state directory (two daemons on one host keep two state
/// directories), recorded with every request it admits so that a restart settles only its own dead requests.
pub fn node_name(state_dir: &Path) -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|| "localhost".to_owned());
    let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    format!("{host}:{}", dir.display())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// Headers every response carries: no MIME sniffing, no referrer leaving the appliance, no framing.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("x-content-type-options", "nosniff"))
        .add(("referrer-policy", "no-referrer"))
        .add(("x-frame-options", "DENY"))
}

/// One line per request at debug level: method, path (no query string: it could carry secrets), status, time.
async fn log_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let t = Instant::now();
    let res = next.call(req).await?;
    tracing::debug!(%method, %path, status = res.status().as_u16(), ms = t.elapsed().as_secs_f64() * 1e3, "request");
    Ok(res)
}
