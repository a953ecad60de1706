/**
 * Capacity search (tcpkali's `-r @latency`): the highest total message rate
 * at which a server keeps its p99 round trip under a target. A closed-loop
 * probe says roughly what the server takes; then open-loop steps double the
 * offered rate from an eighth of that until one misses (p99 over the target,
 * the rate not achieved, or an error), and bisect between the last step that
 * held and the first that missed, to within 5%. Each step is a whole
 * {@linkcode runLoad} run, every byte checked, its latency counted from when
 * each message was due. Private to `tools/load.ts`.
 *
 * @module
 */

import type { LoadOptions } from "./load.ts";
import type { LoadReport } from "./_load_report.ts";
import { count, ErrorSamples, round } from "./_report.ts";

/** Steps a search runs at most, besides its probe. */
export const MAX_STEPS = 12;

/** How close the search brings the last step that held and the first that missed. */
const PRECISION = 0.05;

/** A step is achieved when at least this share of the offered rate came back. */
const ACHIEVED = 0.95;

/** One step of a capacity search: an open-loop run at one total rate. */
export interface CapacityStep {
  /** Its number, from 1. */
  step: number;
  /** Messages per second offered, all connections together. */
  offered: number;
  /** Messages per second echoed and checked. */
  achieved: number;
  /** Median round trip, ms (from when each message was due). */
  p50: number;
  /** 99th percentile round trip, ms. */
  p99: number;
  /** Errors: failed connects, resets, closes, wrong, missing or extra bytes. */
  errors: number;
  /**
   * The load generator's CPU in the step, percent of one core: near 100, a
   * miss may be the generator's limit, not the server's.
   */
  cpu: number;
  /** p99 under the target, at least 95% of the rate achieved, no error. */
  held: boolean;
}

/** What {@linkcode searchCapacity} found. */
export interface CapacityReport {
  /** `HOST:PORT` of the server, or the path of its Unix socket. */
  target: string;
  /** How the connections were carried. */
  transport: LoadReport["transport"];
  /** The mode run. */
  mode: LoadReport["mode"];
  /** Connections carrying traffic in each step. */
  connections: number;
  /** Message size in bytes. */
  size: number;
  /** The p99 to stay under, ms. */
  targetP99: number;
  /** Seconds of traffic in each step. */
  stepSeconds: number;
  /** The closed-loop probe: what the server takes as fast as it can answer. */
  probe: { achieved: number; p50: number; p99: number; errors: number };
  /** The steps, in the order run. */
  steps: CapacityStep[];
  /** The highest offered rate that held, msg/s; null if none did. */
  answer: number | null;
  /** The p99 at that rate, ms; null if none held. */
  answerP99: number | null;
  /** Seconds the whole search took. */
  seconds: number;
  /** The search was cut short by its signal (Ctrl-C). */
  interrupted: boolean;
  /** Why there is no answer, or the search was cut short; empty otherwise. */
  reason: string;
  /** The first few distinct error messages of the steps. */
  errors: string[];
  /** An answer was found and no step saw a wrong or extra byte. */
  ok: boolean;
}

/** What {@linkcode searchCapacity} runs. */
export interface CapacityOptions extends LoadOptions {
  /** The p99 to stay under, ms. */
  targetP99: number;
  /** Steps at most, besides the probe. Default {@linkcode MAX_STEPS}. */
  maxSteps?: number;
  /** Called with the probe's report, before the first step. */
  onProbe?: (probe: CapacityReport["probe"]) => void;
  /** Called as each step ends. */
  onStep?: (step: CapacityStep) => void;
}

/** The errors of one run, as a step counts them. */
function errorsOf(r: LoadReport): number {
  return r.connectFailures + r.resets + r.closedByServer + r.otherErrors +
    (r.mismatchedBytes > 0 ? 1 : 0) + (r.missingBytes > 0 ? 1 : 0) +
    (r.extraBytes > 0 ? 1 : 0);
}

/**
 * Finds the highest total message rate at which the server's p99 stays
 * under `targetP99`: a probe, then at most `maxSteps` runs of `duration`
 * each (so the search ends within about `(maxSteps + 1) * (duration +
 * drain)`). `rate` is ignored: the search sets it.
 *
 * @param run The function that runs one step ({@linkcode runLoad}).
 * @param options As {@linkcode runLoad}'s, plus the target.
 * @returns The steps and the answer.
 * @throws {RangeError} On an option out of range.
 */
export async function searchCapacity(
  run: (options: LoadOptions) => Promise<LoadReport>,
  options: CapacityOptions,
): Promise<CapacityReport> {
  const { targetP99, onProbe, onStep, ...load } = options;
  const maxSteps = options.maxSteps ?? MAX_STEPS;
  if (!(targetP99 > 0) || !Number.isFinite(targetP99)) {
    throw new RangeError(
      `Cannot use targetP99 "${targetP99}": expected a number of ms above 0`,
    );
  }
  const connections = load.connections ?? 50;
  if (connections < 1) {
    throw new RangeError(
      "Cannot search capacity with 0 connections: give at least one",
    );
  }
  const began = performance.now();
  const errors = new ErrorSamples();
  const note = (r: LoadReport) => {
    for (const e of r.errors) errors.note(e);
  };
  let corrupted = false;
  const first = await run({ ...load, rate: 0 });
  note(first);
  corrupted ||= first.mismatchedBytes > 0 || first.extraBytes > 0;
  const probe = {
    achieved: first.messagesPerSecond,
    p50: first.latency.p50,
    p99: first.latency.p99,
    errors: errorsOf(first),
  };
  const steps: CapacityStep[] = [];
  let interrupted = first.interrupted;
  let reason = first.ended === "unconnected" ? first.reason : "";
  if (!interrupted && reason === "") onProbe?.(probe);
  // A rate every connection can be paced at (0.001 to 1,000,000 each).
  const lowest = connections * 0.001;
  const highest = connections * 1_000_000;
  let held = 0; // highest offered rate that held
  let missed = Infinity; // lowest offered rate that missed
  let offered = Math.min(
    highest,
    Math.max(lowest, Math.round(Math.max(probe.achieved, 8) / 8)),
  );
  while (!interrupted && reason === "" && steps.length < maxSteps) {
    const r = await run({ ...load, rate: offered / connections });
    note(r);
    if (r.interrupted) {
      interrupted = true;
      break;
    }
    if (r.ended === "unconnected") {
      reason = r.reason;
      break;
    }
    corrupted ||= r.mismatchedBytes > 0 || r.extraBytes > 0;
    const step: CapacityStep = {
      step: steps.length + 1,
      offered,
      achieved: r.messagesPerSecond,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors: errorsOf(r),
      cpu: r.cpu.percent,
      held: false,
    };
    step.held = step.p99 <= targetP99 && step.errors === 0 &&
      step.achieved >= ACHIEVED * offered;
    steps.push(step);
    onStep?.(step);
    if (step.held) held = Math.max(held, offered);
    else missed = Math.min(missed, offered);
    if (missed !== Infinity && missed - held <= PRECISION * missed) break;
    const next = missed === Infinity
      ? Math.min(highest, offered * 2)
      : Math.round((held + missed) / 2);
    if (next === offered || next < lowest) break;
    offered = next;
  }
  const best =
    steps.filter((s) => s.held).sort((a, b) => b.offered - a.offered)[0];
  if (interrupted) {
    reason = `interrupted after ${steps.length} steps`;
  } else if (reason === "" && best === undefined) {
    reason = `no step kept p99 under ${targetP99} ms${
      steps[0] === undefined ? "" : ` (${count(steps[0].offered)} msg/s and up)`
    }`;
  }
  return {
    target: first.target,
    transport: first.transport,
    mode: first.mode,
    connections,
    size: first.size,
    targetP99,
    stepSeconds: round((load.duration ?? 5_000) / 1000, 3),
    probe,
    steps,
    answer: best?.offered ?? null,
    answerP99: best?.p99 ?? null,
    seconds: round((performance.now() - began) / 1000, 3),
    interrupted,
    reason,
    errors: errors.errors,
    ok: best !== undefined && !corrupted && !interrupted,
  };
}

/** Renders a step as one line. */
export function formatCapacityStep(s: CapacityStep, targetP99: number): string {
  return `step ${String(s.step).padStart(2)}: ${
    count(s.offered).padStart(10)
  } msg/s offered, ${count(s.achieved).padStart(10)} achieved, p50 ${
    s.p50.toFixed(3)
  } ms, p99 ${s.p99.toFixed(3)} ms, ${count(s.errors)} errors: ${
    s.held
      ? `held (p99 under ${targetP99} ms)`
      : s.errors > 0
      ? "missed (errors)"
      : s.p99 > targetP99
      ? `missed (p99 over ${targetP99} ms)`
      : "missed (rate not achieved)"
  }${
    s.cpu >= 90
      ? ` (load generator at ${s.cpu}% of a core: perhaps its limit)`
      : ""
  }`;
}

/** The first line of a search, before its probe. */
export function formatCapacityStart(
  options: { targetP99: number; connections: number; seconds: number },
): string {
  return `capacity search: the highest rate with p99 under ${options.targetP99} ms, ${
    count(options.connections)
  } connections, ${options.seconds} s a step`;
}

/** Renders the probe as one line. */
export function formatCapacityProbe(p: CapacityReport["probe"]): string {
  return `probe (closed loop): ${
    count(p.achieved)
  } msg/s, p50 ${p.p50} ms, p99 ${p.p99} ms, ${count(p.errors)} errors`;
}

/** The last lines of a search: the answer, or why there is none. */
export function formatCapacityAnswer(r: CapacityReport): string {
  const lines = [
    r.answer === null
      ? `answer: none: ${r.reason}`
      : `answer: ${
        count(r.answer)
      } msg/s with p99 ${r.answerP99} ms (under ${r.targetP99} ms) against ${r.target}; ${r.steps.length} steps in ${r.seconds} s`,
  ];
  for (const e of r.errors) lines.push(`error: ${e}`);
  lines.push(
    r.interrupted
      ? `result: ${r.reason}`
      : r.ok
      ? "result: ok"
      : "result: FAILED",
  );
  return lines.join("\n");
}
