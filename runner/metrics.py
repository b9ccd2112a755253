"""Prometheus metrics for `/metrics`: one registry per app, so tests and workers never collide.

Per-frame counters are not touched per frame: each session's transport counts in plain ints and
the totals are added here once, when the session ends. Only gauges of live state are sampled.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
CONNECT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("runner_sessions_active", "Sessions running now.",
                                     ["transport"], registry=r)
        self.sessions_total = Counter("runner_sessions_total", "Sessions ended, by outcome.",
                                      ["transport", "outcome"], registry=r)
        self.sessions_refused = Counter("runner_sessions_refused_total",
                                        "Sessions refused (full or draining).",
                                        ["transport", "reason"], registry=r)
        self.session_duration = Histogram("runner_session_duration_seconds",
                                          "How long sessions lasted.", ["transport"],
                                          buckets=DURATION_BUCKETS, registry=r)
        self.time_to_connect = Histogram("runner_time_to_connect_seconds",
                                         "From session start until the client was connected.",
                                         ["transport"], buckets=CONNECT_BUCKETS, registry=r)
        self.bot_errors = Counter("runner_bot_errors_total", "Bots that raised.", ["transport"],
                                  registry=r)
        self.frames_in = Counter("runner_audio_frames_in_total", "Audio frames received.",
                                 ["transport"], registry=r)
        self.frames_dropped = Counter("runner_audio_frames_dropped_total",
                                      "Inbound frames dropped because the bot read too slowly.",
                                      ["transport"], registry=r)
        self.messages_dropped = Counter("runner_app_messages_dropped_total",
                                        "Inbound app messages dropped because the bot read too "
                                        "slowly.", ["transport"], registry=r)
        self.audio_seconds_out = Counter("runner_audio_out_seconds_total",
                                         "Bot audio sent, in seconds.", ["transport"], registry=r)
        self.loop_lag = Histogram("runner_event_loop_lag_seconds",
                                  "How late the event loop ran a 50 ms timer.",
                                  buckets=LAG_BUCKETS, registry=r)
        self.loop_stalls = Counter("runner_event_loop_stalls_total",
                                   "Event-loop stalls over the --block-warning threshold.",
                                   registry=r)
        self.worker_crashes = Counter("runner_worker_crashes_total",
                                      "Worker processes that died or were killed before their "
                                      "session ended (--isolation process).", ["transport"],
                                      registry=r)
        self.signature_failures = Counter("runner_webhook_signature_failures_total",
                                          "Webhooks or stream tokens that failed verification.",
                                          ["provider"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
