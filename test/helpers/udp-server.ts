// A UDP server in another network namespace (the fake internet), reporting each datagram it gets.
import { spawn } from "node:child_process";

/** A datagram the server received: the sender's address and the payload as text. */
export interface Datagram {
  from: string;
  data: string;
}

/** What {@link udpServer} returns. */
export interface UdpServer {
  /** The next datagram not yet taken, in arrival order; undefined after `timeoutMs` without one. */
  next(timeoutMs: number): Promise<Datagram | undefined>;
  /** The first datagram (taken or not) whose payload is `data`; undefined after `timeoutMs`. */
  until(data: string, timeoutMs: number): Promise<Datagram | undefined>;
  close(): void;
}

/**
 * Starts a UDP server bound to `ip:port` inside namespace `ns` (`ip netns exec`), resolving once it
 * is bound.
 * @throws Error when it has not started within 5 s.
 */
export async function udpServer(ns: string, ip: string, port: number): Promise<UdpServer> {
  const proc = spawn(
    "ip",
    [
      "netns",
      "exec",
      ns,
      process.execPath,
      "-e",
      `const s=require("dgram").createSocket("udp4");s.on("message",(m,r)=>console.log(JSON.stringify({from:r.address,data:m.toString()})));s.bind(${port},"${ip}",()=>console.log("ready"))`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const got: Datagram[] = [];
  let taken = 0;
  let wake: (() => void) | undefined;
  let ready = false;
  proc.stdout?.on("data", (d: Buffer) => {
    for (const l of d.toString().split("\n").filter(Boolean)) {
      if (l === "ready") ready = true;
      else got.push(JSON.parse(l));
    }
    wake?.();
  });
  for (let i = 0; i < 100 && !ready; i++) await new Promise((r) => setTimeout(r, 50));
  if (!ready) {
    proc.kill();
    throw new Error("the UDP server did not start");
  }
  /** Waits until `pick` finds a datagram or `timeoutMs` has passed. */
  async function waitFor(pick: () => Datagram | undefined, timeoutMs: number): Promise<Datagram | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = pick();
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }
  return {
    next: (timeoutMs) => waitFor(() => (taken < got.length ? got[taken++] : undefined), timeoutMs),
    until: (data, timeoutMs) => waitFor(() => got.find((g) => g.data === data), timeoutMs),
    close: () => proc.kill(),
  };
}
