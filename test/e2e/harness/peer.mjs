#!/usr/bin/env node
// A peer outside the host, run inside the "internet" namespace with `ip netns exec NS node peer.mjs ...`
// (a process must live in a namespace to use its network: setns moves one thread only).
//
//   peer.mjs serve SPEC...        SPEC = tcp:ADDR:PORT (HTTP) or udp:ADDR:PORT (echo). Prints
//                                 {"ready":true} once all listen, then one JSON line per request:
//                                 {"proto","local","remote","data"}. Answers "peer saw client=REMOTE".
//   peer.mjs http-get HOST PORT PATH MS     prints the body; exit 1 on error or timeout
//   peer.mjs udp-ask HOST PORT DATA MS      prints the first reply; exit 1 on timeout
import { createSocket } from "node:dgram";
import { request } from "node:http";
import { createServer } from "node:net";

const [cmd, ...args] = process.argv.slice(2);
const log = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

function serve(specs) {
  let pending = specs.length;
  const ready = () => {
    if (--pending === 0) log({ ready: true });
  };
  for (const spec of specs) {
    const [proto, host, portText] = spec.split(":");
    const port = Number(portText);
    const local = `${host}:${port}`;
    if (proto === "tcp") {
      // A bare HTTP/1.0 responder on net (not node:http) so that it logs even a connection that sends nothing.
      const server = createServer((sock) => {
        const remote = sock.remoteAddress?.replace(/^::ffff:/, "");
        let data = "";
        sock.setEncoding("utf8");
        sock.on("data", (d) => {
          data += d;
          if (!data.includes("\r\n\r\n") && !data.includes("\n\n")) return;
          log({ proto, local, remote, data: data.split(/\r?\n/)[0] });
          const body = `peer saw client=${remote}\n`;
          sock.end(
            `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
          );
        });
        sock.on("error", () => undefined);
      });
      server.listen(port, host, ready);
    } else if (proto === "udp") {
      const sock = createSocket("udp4");
      sock.on("message", (msg, rinfo) => {
        log({ proto, local, remote: rinfo.address, data: msg.toString() });
        sock.send(`peer saw client=${rinfo.address}`, rinfo.port, rinfo.address);
      });
      sock.bind(port, host, ready);
    } else {
      throw new Error(`bad spec ${spec}`);
    }
  }
}

function httpGet(host, port, path, ms) {
  const req = request({ host, port: Number(port), path, timeout: Number(ms) }, (res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (d) => {
      body += d;
    });
    res.on("end", () => {
      process.stdout.write(body);
      process.exit(res.statusCode === 200 ? 0 : 1);
    });
  });
  req.on("timeout", () => req.destroy(new Error(`timeout after ${ms} ms`)));
  req.on("error", (e) => {
    console.error(`http-get ${host}:${port}${path}: ${e.message}`);
    process.exit(1);
  });
  req.end();
}

function udpAsk(host, port, data, ms) {
  const sock = createSocket("udp4");
  const timer = setTimeout(() => {
    console.error(`udp-ask ${host}:${port}: no reply in ${ms} ms`);
    process.exit(1);
  }, Number(ms));
  sock.on("message", (msg) => {
    clearTimeout(timer);
    process.stdout.write(`${msg.toString()}\n`);
    process.exit(0);
  });
  sock.send(data, Number(port), host);
}

if (cmd === "serve") serve(args);
else if (cmd === "http-get") httpGet(...args);
else if (cmd === "udp-ask") udpAsk(...args);
else {
  console.error("usage: peer.mjs serve SPEC... | http-get HOST PORT PATH MS | udp-ask HOST PORT DATA MS");
  process.exit(2);
}
