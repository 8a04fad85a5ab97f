/**
 * Peers for the e2e tests: clients and servers on the host (this process, inside the test's private
 * namespace) and in the fake "internet" namespace (through peer.mjs).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createSocket } from "node:dgram";
import { request } from "node:http";
import { createServer, type Server } from "node:net";

const PEER = new URL("./peer.mjs", import.meta.url).pathname;

/** One request a peer server received. */
export interface PeerRecord {
  proto: "tcp" | "udp";
  local: string;
  remote: string;
  data: string;
}

/** A peer.mjs server running in another namespace. */
export interface PeerServer {
  /** Everything it received so far. */
  records(): PeerRecord[];
  stop(): Promise<void>;
}

/**
 * Starts peer.mjs serving `specs` (`tcp:ADDR:PORT` = HTTP, `udp:ADDR:PORT` = echo) in namespace `ns`.
 * @throws when it does not report ready within 10 s.
 */
export async function startPeer(ns: string, specs: string[]): Promise<PeerServer> {
  const proc: ChildProcess = spawn("ip", ["netns", "exec", ns, process.execPath, PEER, "serve", ...specs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const records: PeerRecord[] = [];
  let buf = "";
  let err = "";
  proc.stderr?.on("data", (d) => {
    err += d;
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`peer in ${ns} not ready: ${err}`)), 10_000);
    proc.on("exit", (code) => reject(new Error(`peer in ${ns} exited ${code}: ${err}`)));
    proc.stdout?.on("data", (d) => {
      buf += d;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const o = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (o.ready) {
          clearTimeout(timer);
          resolve();
        } else records.push(o as PeerRecord);
        nl = buf.indexOf("\n");
      }
    });
  });
  return {
    records: () => [...records],
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const gone = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await gone;
    },
  };
}

/** Runs a peer.mjs client command in namespace `ns`; returns its exit status and output. */
export function peerClient(ns: string, args: string[]): { rc: number; out: string } {
  const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, PEER, ...args], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { rc: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** HTTP GET from this process. Resolves to the body; rejects on error, non-200 or timeout. */
export function httpGet(host: string, port: number, path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, timeout: timeoutMs, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`GET http://${host}:${port}${path}: timeout`)));
    req.on("error", reject);
    req.end();
  });
}

/** Sends one UDP datagram from this process and resolves to the first reply; rejects on timeout. */
export function udpAsk(host: string, port: number, data: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = createSocket("udp4");
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`udp ${host}:${port}: no reply in ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on("message", (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(msg.toString());
    });
    sock.send(data, port, host);
  });
}

/** A TCP service on the host that remembers who connected and what they sent. */
export interface HostService {
  port: number;
  /** One entry per connection: the client's address and the bytes it sent (utf8). */
  seen: Array<{ remote: string; data: string }>;
  close(): Promise<void>;
}

/** Listens on 0.0.0.0:`port`; answers each connection with `host-service-<port>` and closes. */
export function hostService(port: number): Promise<HostService> {
  const seen: HostService["seen"] = [];
  const server: Server = createServer((sock) => {
    const entry = { remote: sock.remoteAddress?.replace(/^::ffff:/, "") ?? "", data: "" };
    seen.push(entry);
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      entry.data += d;
    });
    sock.on("error", () => undefined);
    sock.end(`host-service-${port}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () =>
      resolve({
        port,
        seen,
        close: () => new Promise<void>((r) => server.close(() => r())),
      }),
    );
  });
}

/** Polls `fn` every `everyMs` until it resolves; returns ms waited. Rejects with the last error. */
export async function retryUntil(
  fn: () => Promise<unknown>,
  timeoutMs: number,
  everyMs = 50,
): Promise<number> {
  const t0 = performance.now();
  let last: unknown;
  while (performance.now() - t0 < timeoutMs) {
    try {
      await fn();
      return performance.now() - t0;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}
