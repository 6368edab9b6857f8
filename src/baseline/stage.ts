/**
 * Baseline and drift as two stages. `BaselineStage`, before the filter, marks each
 * connection event `novel` when no rule of the baseline covers its flow (so that
 * `-include novel=true` can select on it). `DriftStage`, just before the output,
 * tallies the novel events that were reported (the run's exit code and metrics
 * come from it) and, with `--learn`, records every reported flow the learn file
 * does not cover yet and saves them into it: every minute, and at the end.
 * @module
 */
import type { ConnEvent } from "../event.ts";
import { type Counters, Stage } from "../stage.ts";
import { eventLine, flowName, isFlowEvent, peerWorkloadOf, programOf, servicePort, workloadOf } from "./flow.ts";
import { Baseline } from "./rules.ts";
import { type BaselineFile, currentStamp, loadBaseline } from "./file.ts";

/** The stage that marks events novel or not. */
export class BaselineStage extends Stage<ConnEvent> {
  readonly name = "baseline";
  #rules: Baseline;
  #checked = 0;

  constructor(rules: Baseline) {
    super();
    this.#rules = rules;
  }

  push(e: ConnEvent): void {
    if (isFlowEvent(e)) {
      e.novel = !this.#rules.covers(e);
      this.#checked++;
    }
    this.emit(e);
  }

  #reloads = 0;
  #reloadFailures = 0;

  /** Judge by these rules from now on (the file changed, or SIGHUP re-read it). */
  replace(rules: Baseline): void {
    this.#rules = rules;
    this.#reloads++;
  }

  /** The file changed but could not be used: the rules stay as they were. */
  reloadFailed(): void {
    this.#reloadFailures++;
  }

  override counters(): Counters {
    return {
      checked: this.#checked,
      "verdict-resets": this.#rules.verdictResets,
      reloads: this.#reloads,
      "reload-failures": this.#reloadFailures,
    };
  }

  override readonly notable: ReadonlySet<string> = new Set(["reload-failures"]);
}

/** New flows learned in one run at most; the rest are counted, not kept. */
export const MAX_LEARNED = 100_000;
/** How often learned flows are saved while running. */
export const SAVE_EVERY_MS = 60_000;

/** `--learn FILE`: the flows the file does not cover yet, saved into it. */
export class Learner {
  readonly path: string;
  #rules = new Baseline();
  #file: BaselineFile | undefined;
  #stamp = "";
  #pending = new Map<string, string[]>();
  #pendingCount = 0;
  /** Flows the file lists (after the last save). */
  flows = 0;
  /** New flows saved by this run. */
  saved = 0;
  /** Events of new flows not kept: past MAX_LEARNED. */
  skipped = 0;
  #learned = 0;

  private constructor(path: string) {
    this.path = path;
  }

  /** Open a learn file: read it when it exists (its rules say what is known already). */
  static async open(path: string): Promise<Learner> {
    const l = new Learner(path);
    l.#file = await loadBaseline(path, l.#rules, "--learn", true);
    l.#stamp = l.#file?.stamp ?? "";
    l.flows = l.#file?.flows ?? 0;
    return l;
  }

  /** Record the event's flow unless the file covers it or it was recorded already. */
  observe(e: ConnEvent): void {
    if (this.#rules.covers(e)) return;
    if (this.#learned >= MAX_LEARNED) {
      this.skipped++;
      return;
    }
    const w = workloadOf(e);
    const line = eventLine(e);
    this.#rules.addFlow(
      w,
      programOf(e),
      peerWorkloadOf(e) || flowName(e) || e.daddr,
      servicePort(e),
      e.direction === "inbound",
    );
    this.#learned++;
    const list = this.#pending.get(w);
    if (list) list.push(line);
    else this.#pending.set(w, [line]);
    this.#pendingCount++;
  }

  /** Flows learned and not saved yet. */
  get pending(): number {
    return this.#pendingCount;
  }

  /**
   * Merge what was learned into the file and replace it. When another writer
   * changed the file since it was read, its new text is read and merged into
   * instead. Throws what writing throws (a full disk); nothing learned is lost then.
   */
  save(): Promise<void> {
    // One save at a time: a periodic one still running when the run ends is waited for, then the rest is saved.
    const next = this.#saving.catch(() => {}).then(() => this.#saveNow());
    this.#saving = next;
    return next;
  }

  #saving: Promise<void> = Promise.resolve();

  async #saveNow(): Promise<void> {
    if (this.#pendingCount === 0) return;
    const { documentOf, documentText, mergeFlows, replaceFile } = await import("./merge.ts");
    if (currentStamp(this.path) !== this.#stamp) {
      // Another writer changed the file since it was read: merge into their version.
      this.#file = await loadBaseline(this.path, new Baseline(), "--learn", true);
    }
    const doc = documentOf(this.#file?.text ?? "");
    mergeFlows(doc, this.#pending);
    const text = documentText(doc);
    let mode = 0o644;
    let owner: { uid: number; gid: number } | undefined;
    try {
      const info = Deno.lstatSync(this.path);
      if (info.isFile && info.mode !== null) mode = info.mode & 0o755;
      if (info.uid !== null && info.gid !== null) owner = { uid: info.uid, gid: info.gid };
    } catch { /* a new file */ }
    replaceFile(this.path, text, mode, owner);
    const added = this.#pendingCount;
    this.#file = { path: this.path, text, flows: (this.#file?.flows ?? 0) + added, stamp: currentStamp(this.path) };
    this.#stamp = this.#file.stamp;
    this.flows = this.#file.flows;
    this.saved += added;
    this.#pending.clear();
    this.#pendingCount = 0;
  }
}

/** What the drift stage needs. */
export interface DriftOptions {
  /** The baseline file flagged against, for the exit line. */
  baselinePath?: string;
  learner?: Learner;
  /** Now, in ms (tests set it). */
  now?: () => number;
}

/** Novel flows remembered (to count distinct ones) at most. */
const MAX_NOVEL_FLOWS = 100_000;

/** The stage that tallies novel events and learns flows. */
export class DriftStage extends Stage<ConnEvent> {
  readonly name = "drift";
  override readonly notable: ReadonlySet<string> = new Set(["learn-skipped"]);
  #o: DriftOptions;
  #novelFlows = new Set<string>();
  #novelEvents = 0;
  /** Novel connections reported, by status (connect and accept records). */
  readonly novelByStatus = new Map<string, number>();
  #lastSave: number;
  #saveError = "";
  /** The last save at the end failed: what was learned is not in the file. */
  saveFailed = false;

  constructor(o: DriftOptions) {
    super();
    this.#o = o;
    this.#lastSave = (o.now ?? Date.now)();
  }

  /** Distinct novel flows reported (past MAX_NOVEL_FLOWS remembered, each novel event of another counts as one). */
  get novelFlows(): number {
    return this.#novelFlows.size + this.#novelUnremembered;
  }
  #novelUnremembered = 0;

  push(e: ConnEvent): void {
    if (e.novel === true) {
      this.#novelEvents++;
      const key = `${workloadOf(e)}\0${eventLine(e)}`;
      if (!this.#novelFlows.has(key)) {
        if (this.#novelFlows.size < MAX_NOVEL_FLOWS) this.#novelFlows.add(key);
        else this.#novelUnremembered++;
      }
      if (e.event !== "close") this.novelByStatus.set(e.status, (this.novelByStatus.get(e.status) ?? 0) + 1);
    }
    if (this.#o.learner && isFlowEvent(e)) this.#o.learner.observe(e);
    this.emit(e);
  }

  override counters(): Counters {
    const l = this.#o.learner;
    return {
      novel: this.#novelEvents,
      "novel-flows": this.novelFlows,
      ...(l ? { learned: l.saved + l.pending, "learn-skipped": l.skipped } : {}),
    };
  }

  override housekeeping(): void {
    const now = (this.#o.now ?? Date.now)();
    if (!this.#o.learner?.pending || now - this.#lastSave < SAVE_EVERY_MS) return;
    this.#lastSave = now;
    this.#save().catch(() => {});
  }

  async #save(): Promise<boolean> {
    const l = this.#o.learner!;
    try {
      await l.save();
      this.#saveError = "";
      return true;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // Said once per distinct failure; the flows stay and the next save tries again.
      if (msg !== this.#saveError) {
        this.ctx.log(
          `lightmon: cannot save the baseline ${l.path} (${msg}); ${l.pending} new flows kept for the next try`,
        );
      }
      this.#saveError = msg;
      return false;
    }
  }

  #closing: Promise<void> | undefined;

  override close(): void {
    this.#closing = this.#finish();
  }

  override async settle(_ms: number): Promise<void> {
    await this.#closing;
  }

  async #finish(): Promise<void> {
    const { baselinePath, learner } = this.#o;
    if (baselinePath !== undefined) {
      const flows = this.novelFlows;
      this.ctx.log(
        flows === 0
          ? `lightmon: baseline ${baselinePath}: nothing novel`
          : `lightmon: baseline ${baselinePath}: ${flows} novel flow${
            flows === 1 ? "" : "s"
          } in ${this.#novelEvents} event${this.#novelEvents === 1 ? "" : "s"}`,
      );
    }
    if (!learner) return;
    this.#saveError = "";
    if (!(await this.#save())) {
      this.saveFailed = true;
      return;
    }
    const skipped = learner.skipped
      ? `; ${learner.skipped} events of further new flows not learned (at most ${MAX_LEARNED} new flows a run)`
      : "";
    this.ctx.log(
      `lightmon: learned ${
        learner.saved ? `${learner.saved} new flow${learner.saved === 1 ? "" : "s"}` : "nothing new"
      } into ${learner.path} (${learner.flows} in all)${skipped}`,
    );
  }
}
