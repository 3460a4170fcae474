// The admin API's shapes, generated from the Rust types of crates/api (api.gen.ts, committed;
// `cargo test -p understudy-api --features ts` fails when it is stale). The console renders
// them: whether an action is allowed and why not, whether an event notifies and its severity,
// all come from the engine.

export type {
  AgentView as Agent,
  AlertView as AlertItem,
  ChannelSpec as Channel,
  ChannelEdit,
  KeptSetting,
  CertInfo,
  CheckSpec as CheckDef,
  EventView as EventItem,
  LinkView as LinkInfo,
  NodeView as NodeInfo,
  PairStatus as Pair,
  RecordView as RecordItem,
  ServerView as ServerEntry,
  Severity,
  Status,
} from './api.gen';

export type ActiveMember = 'primary' | 'secondary' | 'none';

/** The at-a-glance state, as on the tray icon (UI-3). */
export type Overall = 'normal' | 'degraded' | 'blackout' | 'stopped';
