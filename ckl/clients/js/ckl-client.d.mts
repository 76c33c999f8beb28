// Types of ckl-client.mjs: the server's models (as /openapi.json describes them), the
// client's options, and its typed errors. Times are ISO-8601 strings (UTC). Named .d.mts so
// TypeScript finds it for `import … from "./ckl-client.mjs"` (a .d.ts is not looked up for .mjs).

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };
/** Where a batch resumes: an offset, a key, or a JSON value. */
export type Cursor = number | string | JsonObject | JsonValue[];
export type Status = "open" | "completed" | "failed" | "cancelled";
/** An ISO-8601 time (no zone: UTC) or a Date. */
export type Moment = string | Date;

// ------------------------------------------------------------------------------- models

export interface CheckpointToken {
  run_id: string;
  batch_index: number;
  checkpoint_id: string;
}

/** Anything naming a checkpoint: a token, or a state (its `token`). */
export type CheckpointRef = { run_id: string; batch_index: number } | { token: CheckpointToken };

export interface CheckpointError {
  type: string;
  message: string;
  transient: boolean;
}

export interface CheckpointState {
  token: CheckpointToken;
  total_batches: number | null;
  metadata: JsonObject;
  status: Status;
  attempt: number;
  cursor: Cursor | null;
  items_processed: number;
  accumulated_results: JsonObject | null;
  result: JsonValue;
  error: CheckpointError | null;
  version: number;
  created_at: string;
  updated_at: string;
  yields: number;
  last_transition: string;
  last_event: string;
  last_reset_reason: string | null;
  owner: string | null;
  lease_id: string | null;
  lease_ttl: number | null;
  lease_expires_at: string | null;
  cancel_reason: string | null;
  recent_commands: string[];
  recent_topics: string[];
  taken_over_from: string | null;
  unproductive_attempts: number;
  attempt_started_items: number;
}

export interface Lease {
  token: CheckpointToken;
  owner: string;
  attempt: number;
  lease_id: string;
  ttl: number;
  expires_at: string;
  taken_over: boolean;
  previous_owner: string | null;
}

/** One immutable event; the other keys depend on the topic (Created, Yielded, Failed…). */
export interface CheckpointEvent {
  originator_id: string;
  originator_version: number;
  timestamp: string;
  command_id: string | null;
  [key: string]: JsonValue;
}

export interface CheckpointEventEntry {
  /** The event's kind: "checkpoint.Created", "checkpoint.Yielded"… */
  topic: string;
  event: CheckpointEvent;
}

export interface EventList {
  events: CheckpointEventEntry[];
  next_after_version: number | null;
}

export interface HistoryEntry {
  seq: number;
  attempt: number;
  cursor: Cursor;
  items_processed: number;
  at: string;
  position: number;
}

export interface History {
  checkpoint_id: string;
  total_yields: number;
  entries: HistoryEntry[];
}

export interface RunProgress {
  run_id: string;
  total_batches: number | null;
  created: number;
  completed: number;
  failed: number;
  open: number;
  cancelled: number;
}

export interface RunDetail {
  run_id: string;
  as_of: string | null;
  progress: RunProgress;
  items_processed: number;
  total_items: number | null;
  checkpoints: CheckpointState[];
}

export interface RunSummary {
  run_id: string;
  status: "failed" | "running" | "completed";
  total_batches: number | null;
  created: number;
  completed: number;
  failed: number;
  open: number;
  cancelled: number;
  items_processed: number;
  created_at: string;
  last_activity: string;
}

export interface TimelineEntry {
  position: number;
  at: string;
  batch_index: number;
  version: number;
  topic: string;
  event: CheckpointEvent;
}

export interface CheckpointSummary {
  checkpoint_id: string;
  run_id: string;
  batch_index: number;
  total_batches: number | null;
  status: Status;
  attempt: number;
  cursor: Cursor | null;
  items_processed: number;
  accumulated_results: JsonObject | null;
  yields: number;
  version: number;
  created_at: string;
  updated_at: string;
  position: number;
  owner: string | null;
  lease_expires_at: string | null;
  last_activity: string;
}

export interface StuckCheckpoint {
  run_id: string;
  batch_index: number;
  status: Status;
  attempt: number;
  owner: string | null;
  lease_expires_at: string | null;
  last_activity: string;
  idle_seconds: number;
  reason: string;
}

export interface FailureRecord {
  position: number;
  checkpoint_id: string;
  run_id: string;
  batch_index: number;
  attempt: number;
  error_type: string;
  message: string;
  transient: boolean;
  cursor: Cursor | null;
  items_processed: number;
  failed_at: string;
  resolution: string | null;
  resolved_at: string | null;
  kind: "failure" | "takeover" | "cancel";
  traceback: string | null;
  host: string | null;
  pid: number | null;
}

export interface VerifyReport {
  run_id: string | null;
  checkpoints: number;
  events: number;
  /** Empty when every chain checks out. */
  problems: JsonObject[];
  notes: string[];
  anchor_written: string | null;
}

export interface Health {
  status: "ok";
  store: string;
  version: string;
  views_position: number;
  stream_position: number;
  /** Event streams attached now. */
  streams: number;
  /** Long-polls (…/await) waiting now. */
  awaiting: number;
}

export interface ArchiveSummary {
  run_id: string;
  path: string;
  events: number;
  checkpoints: number;
  file_sha256: string;
  heads: { [checkpointId: string]: JsonObject };
  written: number;
  purged: boolean;
  restored: boolean;
}

/** One SSE event's data: the event and where it sits in the log. */
export interface StreamEvent {
  position: number;
  run_id: string;
  batch_index: number;
  checkpoint_id: string;
  topic: string;
  at: string;
  event: CheckpointEvent;
}

// ------------------------------------------------------------------------------- options

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:8000"; a function is asked before every request. */
  baseUrl: string | (() => string | Promise<string>);
  /** A bearer token (`ckl token`). */
  token?: string;
  /** Repeats after a 503 with Retry-After or a lost connection (default 3). */
  retries?: number;
  /** First wait after a lost connection, doubling (default 250 ms). */
  retryDelayMs?: number;
  /** Longest wait between two attempts or reconnects (default 10 s). */
  maxRetryDelayMs?: number;
  fetch?: typeof fetch;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface CommandOptions extends CallOptions {
  /** The command id; default: a fresh crypto.randomUUID() per call (reused by its retries). */
  idempotencyKey?: string;
}

export interface Fenced extends CommandOptions {
  /** The attempt this write belongs to (a superseded one gets StaleAttempt). */
  attempt?: number;
  /** The lease the write is made under, as a claim returned it. */
  lease?: Lease;
}

export interface CreateOptions extends CommandOptions {
  totalBatches?: number;
  metadata?: JsonObject;
}

export interface YieldOptions extends Fenced {
  cursor: Cursor;
  itemsProcessed: number;
  accumulatedResults?: JsonObject;
}

export interface CompleteOptions extends Fenced {
  result?: JsonValue;
}

export interface FailOptions extends Fenced {
  /** A message, or an Error: its name, message and stack fill errorType, error, traceback. */
  error: string | Error;
  errorType?: string;
  transient?: boolean;
  traceback?: string;
  host?: string;
  pid?: number;
}

export interface ReasonOptions extends CommandOptions {
  reason: string;
}

export interface ClaimOptions extends CommandOptions {
  owner: string;
  /** Seconds the lease lasts without a write or heartbeat. */
  ttl: number;
}

export interface ClaimNextOptions extends ClaimOptions {
  retryDelay?: number;
  maxRetryDelay?: number;
}

export interface AwaitOptions extends CallOptions {
  /** Seconds to wait at most (default 30, at most the server's --max-await). */
  timeout?: number;
  /** Resolve with the state however it ended (no CheckpointFailedError/Cancelled). */
  settled?: boolean;
}

export interface StreamOptions {
  /** Start after this global position (default 0: from the start). */
  after?: number;
  /** Called once per position, in order; awaited before the next. */
  onEvent: (event: StreamEvent) => void | Promise<void>;
  signal?: AbortSignal;
  /** Told why before each reconnect (reason: "shutdown", "slow_client", "disconnected"…). */
  onReconnect?: (info: { reason: string; detail?: string; lastEventId: number }) => void;
  /** Reconnect after this long without a byte (default 60 s; keep-alives come every 15 s). */
  idleTimeoutMs?: number;
}

// ------------------------------------------------------------------------------- client

export class CklClient {
  constructor(options: ClientOptions);
  request<T = unknown>(
    method: "GET" | "POST",
    path: string,
    options?: CommandOptions & { body?: JsonValue; raw?: boolean },
  ): Promise<T>;

  createCheckpoint(runId: string, batchIndex: number, options?: CreateOptions): Promise<CheckpointState>;
  createCheckpoint(ref: CheckpointRef, options?: CreateOptions): Promise<CheckpointState>;
  checkpointYield(runId: string, batchIndex: number, options: YieldOptions): Promise<CheckpointState>;
  checkpointYield(ref: CheckpointRef, options: YieldOptions): Promise<CheckpointState>;
  completeCheckpoint(runId: string, batchIndex: number, options?: CompleteOptions): Promise<CheckpointState>;
  completeCheckpoint(ref: CheckpointRef, options?: CompleteOptions): Promise<CheckpointState>;
  failCheckpoint(runId: string, batchIndex: number, options: FailOptions): Promise<CheckpointState>;
  failCheckpoint(ref: CheckpointRef, options: FailOptions): Promise<CheckpointState>;
  retryCheckpoint(runId: string, batchIndex: number, options?: CommandOptions): Promise<CheckpointState>;
  retryCheckpoint(ref: CheckpointRef, options?: CommandOptions): Promise<CheckpointState>;
  resetCheckpoint(runId: string, batchIndex: number, options: ReasonOptions): Promise<CheckpointState>;
  resetCheckpoint(ref: CheckpointRef, options: ReasonOptions): Promise<CheckpointState>;
  cancelCheckpoint(runId: string, batchIndex: number, options: ReasonOptions): Promise<CheckpointState>;
  cancelCheckpoint(ref: CheckpointRef, options: ReasonOptions): Promise<CheckpointState>;
  claimCheckpoint(runId: string, batchIndex: number, options: ClaimOptions): Promise<Lease>;
  claimCheckpoint(ref: CheckpointRef, options: ClaimOptions): Promise<Lease>;
  heartbeat(lease: Lease, options?: CommandOptions): Promise<Lease>;
  release(lease: Lease, options?: CommandOptions): Promise<CheckpointState>;
  /** The lease of the run's first claimable checkpoint, or null when none is claimable now. */
  claimNext(runId: string, options: ClaimNextOptions): Promise<Lease | null>;
  verify(runId?: string | null, options?: CommandOptions): Promise<VerifyReport>;
  /** Archive a finished run into the server's --archive-dir (operate scope). */
  archiveRun(runId: string, options?: CommandOptions): Promise<ArchiveSummary>;
  /** The run's JSON-lines archive, as `ckl export` writes it. */
  exportRun(runId: string, options?: CallOptions): Promise<string>;

  getCheckpoint(runId: string, batchIndex: number, options?: CallOptions & { asOf?: number | Moment }): Promise<CheckpointState>;
  getCheckpoint(ref: CheckpointRef, options?: CallOptions & { asOf?: number | Moment }): Promise<CheckpointState>;
  checkpointEvents(runId: string, batchIndex: number, options?: CallOptions & { afterVersion?: number; limit?: number }): Promise<EventList>;
  checkpointEvents(ref: CheckpointRef, options?: CallOptions & { afterVersion?: number; limit?: number }): Promise<EventList>;
  history(runId: string, batchIndex: number, options?: CallOptions): Promise<History>;
  history(ref: CheckpointRef, options?: CallOptions): Promise<History>;
  /** The completed state; rejects with CheckpointFailedError, CheckpointCancelled, AwaitTimeout. */
  awaitCheckpoint(runId: string, batchIndex: number, options?: AwaitOptions): Promise<CheckpointState>;
  awaitCheckpoint(ref: CheckpointRef, options?: AwaitOptions): Promise<CheckpointState>;
  listRuns(options?: CallOptions & { status?: RunSummary["status"]; contains?: string; limit?: number }): Promise<{ runs: RunSummary[] }>;
  getRun(runId: string, options?: CallOptions & { asOf?: Moment }): Promise<RunDetail>;
  timeline(
    runId: string,
    options?: CallOptions & { after?: number; since?: Moment; until?: Moment; batch?: number | number[]; topic?: string | string[]; limit?: number },
  ): Promise<{ entries: TimelineEntry[]; next_after: number | null }>;
  pending(runId: string, options?: CallOptions): Promise<{ pending: CheckpointSummary[] }>;
  stuck(runId?: string | null, options?: CallOptions & { idle?: number }): Promise<{ stuck: StuckCheckpoint[] }>;
  failures(
    options?: CallOptions & {
      runId?: string;
      since?: Moment;
      until?: Moment;
      errorType?: string;
      transient?: boolean;
      kind?: FailureRecord["kind"];
      batch?: number | number[];
      after?: number;
      limit?: number;
    },
  ): Promise<{ failures: FailureRecord[]; next_after: number | null }>;
  health(options?: CallOptions): Promise<Health>;

  /** Follow a run's events (null: every run's) until `signal` aborts; resumes by itself. */
  stream(runId: string | null, options: StreamOptions): Promise<{ lastEventId: number }>;
}

export default CklClient;

// ------------------------------------------------------------------------------- errors

export interface ErrorBody {
  error: string;
  message: string;
  status: number;
  fields: { [key: string]: JsonValue };
}

/** Every error of the service or the client; `status` 0 means no HTTP reply. */
export class CklError extends Error {
  constructor(message: string, options?: { status?: number; error?: string; fields?: ErrorBody["fields"]; cause?: unknown });
  /** The server's error name (the class name for the known ones). */
  error: string;
  status: number;
  fields: ErrorBody["fields"];
}
export function errorFromBody(body: unknown, status: number): CklError;

export class InvalidInput extends CklError {}
export class PayloadTooLarge extends InvalidInput {}
export class PayloadMismatch extends InvalidInput {}
export class ProgressWentBackwards extends InvalidInput {}
export class FileNotWritable extends InvalidInput {}
export class InvalidStoreURL extends CklError {}
export class CheckpointNotFound extends CklError {}
export class RunNotFound extends CheckpointNotFound {}
export class InvalidTransition extends CklError {}
export class ConflictingCommand extends InvalidTransition {}
export class StaleAttempt extends InvalidTransition {}
export class LeaseLost extends StaleAttempt {}
export class CheckpointClaimed extends InvalidTransition {}
export class CheckpointCancelled extends InvalidTransition {
  /** Set when awaitCheckpoint found the checkpoint cancelled. */
  state?: CheckpointState;
}
export class CheckpointFailedError extends CklError {
  /** The failed checkpoint's state (awaitCheckpoint). */
  state?: CheckpointState;
}
export class AwaitTimeout extends CklError {}
export class StoreUnavailable extends CklError {}
export class StoreFailure extends CklError {}
export class StoreNotADatabase extends StoreFailure {}
export class StoreCorrupt extends StoreFailure {}
export class StoreReadOnly extends StoreFailure {}
export class StoreDirectoryMissing extends StoreFailure {}
export class StoreFull extends StoreFailure {}
export class StoreAuthFailed extends StoreFailure {}
export class LedgerClosed extends StoreFailure {}
export class StoreSchemaMismatch extends CklError {}
export class TamperDetected extends CklError {}
export class ArchiveError extends CklError {}
export class RunNotFinished extends ArchiveError {}
export class RunArchived extends ArchiveError {}
export class ArchiveFileInvalid extends ArchiveError {}
export class ImportConflict extends ArchiveError {}
export class ServiceError extends CklError {}
export class Unauthorized extends ServiceError {}
export class OutOfScope extends ServiceError {}
export class TooManyStreams extends ServiceError {}
export class ServiceStopping extends ServiceError {}
export class NotFound extends CklError {}
export class MethodNotAllowed extends CklError {}
export class NetworkError extends CklError {}
