// import { SshMux } from 'sshmux'
export { SshMux } from './sshmux';
export type { ConnectOptions, CallOptions, SpawnOptions, ExecOptions, ExecResult, Status, ForwardLocalOptions, LocalForward, TransferOptions, ControlAction, ControlResult } from './sshmux';
export { RemoteProcess } from './remote-process';
export type { ExitResult, StartedInfo } from './remote-process';
export { SshMuxError } from './errors';
export type { SshMuxErrorCode } from './errors';
export { Transfer } from './transfer';
export type { TransferProgress, TransferResult } from './transfer';
export { Jobs } from './jobs';
export type { JobInfo, JobState, SubmitOptions, WaitOptions, LogOptions } from './jobs';
