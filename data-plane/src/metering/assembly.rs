//! How usage flows are assembled at start: with a data directory, queue →
//! spool writer → spool reporter → control plane (durable); without one,
//! queue → in-memory reporter → control plane.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::spool::{Spool, SpoolReporter, SpoolWriter};
use super::{ChannelSink, CpUsageReporter};
use crate::server::{BackgroundTask, UsageShutdown};

/// Builds the usage transport inside a background task: the lazily
/// (re)connecting channel needs the background runtime.
pub(crate) struct UsageTransportFactory {
    pub(crate) endpoint: crate::sync::grpc::CpTarget,
    pub(crate) auth: tollgate_proto::client::BearerAuth,
}

impl UsageTransportFactory {
    fn build(self) -> Box<dyn super::reporter::UsageTransport> {
        Box::new(super::reporter::GrpcUsageTransport::new(
            self.endpoint.connect_lazy(),
            self.auth,
        ))
    }
}

/// Queue → spool writer (group-committed to disk) → spool reporter → CP.
pub(crate) fn durable_usage(
    tasks: &mut Vec<BackgroundTask>,
    rx: tokio::sync::mpsc::Receiver<super::UsageRecord>,
    sink: Arc<ChannelSink>,
    spool: Arc<Spool>,
    transport: UsageTransportFactory,
    node_id: String,
) -> UsageShutdown {
    let writer = SpoolWriter::new(spool.clone());
    tasks.push(Box::new(move |shutdown| writer.run(rx, shutdown).boxed()));
    let reporter_spool = spool.clone();
    tasks.push(Box::new(move |shutdown| {
        async move {
            SpoolReporter::new(transport.build(), node_id, reporter_spool)
                .run(shutdown)
                .await;
        }
        .boxed()
    }));
    let monitored = spool.clone();
    tasks.push(Box::new(move |shutdown| {
        monitored.monitor(shutdown).boxed()
    }));
    let unwritten_spool = spool.clone();
    UsageShutdown {
        unwritten: Arc::new(move || {
            let pending = sink.accepted().saturating_sub(unwritten_spool.handled());
            usize::try_from(pending).unwrap_or(usize::MAX)
        }),
        unreported: Arc::new(move || usize::try_from(spool.depth().records).unwrap_or(usize::MAX)),
        // Durable either way: a short last try, the rest goes after restart.
        report_wait: Duration::from_secs(1),
    }
}

/// Queue → in-memory reporter → CP (no data directory).
pub(crate) fn in_memory_usage(
    tasks: &mut Vec<BackgroundTask>,
    rx: tokio::sync::mpsc::Receiver<super::UsageRecord>,
    sink: Arc<ChannelSink>,
    transport: UsageTransportFactory,
    node_id: String,
) -> UsageShutdown {
    let progress = Arc::new(super::reporter::ReporterProgress::default());
    let unacked = progress.clone();
    tasks.push(Box::new(move |shutdown| {
        async move {
            CpUsageReporter::new(transport.build(), node_id, rx, progress)
                .run(shutdown)
                .await;
        }
        .boxed()
    }));
    UsageShutdown {
        unwritten: Arc::new(|| 0),
        unreported: Arc::new(move || sink.queued() + unacked.unacked()),
        // Lost on exit: worth waiting a little longer for.
        report_wait: Duration::from_secs(3),
    }
}
