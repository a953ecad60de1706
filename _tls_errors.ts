/**
 * What a TLS failure means, in one line a user can act on, read from the
 * words rustls (and the server's alerts) give: an expired certificate, a
 * name mismatch, an unknown CA, a key that does not match, a server that
 * refused our client certificate, hung up, or does not speak TLS.
 *
 * Private to this package.
 *
 * @module
 */

import { describeError, isPeerGone } from "./_cli.ts";

/**
 * The one-line cause of a TLS failure, from rustls's words: an expired
 * certificate, a name mismatch, an unknown CA, a key that does not match.
 * Anything else is {@linkcode describeError}'s reading.
 */
export function describeTlsError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const expired = message.match(/certificate expired.*not valid after (\d+)/);
  if (expired) {
    const when = new Date(Number(expired[1]) * 1000).toISOString()
      .replace(".000Z", "Z");
    return `certificate expired (not valid after ${when})`;
  }
  if (/certificate expired/.test(message)) return "certificate expired";
  if (/not valid yet|NotValidYet/.test(message)) {
    return "certificate not valid yet";
  }
  const name = message.match(
    /certificate not valid for name "([^"]*)"(?:; certificate is only valid for (.*))?/,
  );
  if (name) {
    const valid = name[2]
      ? ` (it is for ${
        [...name[2].matchAll(/\("([^"]*)"\)|\(([\d.:a-f]+)\)/g)]
          .map((m) => m[1] ?? m[2]).join(", ") || name[2]
      })`
      : "";
    return `certificate is not valid for "${name[1]}"${valid}; ` +
      `connect by a name it holds or give it with --server-name`;
  }
  if (/NotValidForName/.test(message)) {
    return "certificate is not valid for this name (see --server-name)";
  }
  if (/UnknownIssuer|UnknownCA|unknown ca/i.test(message)) {
    return "certificate signed by an unknown CA (trust its CA with --ca FILE)";
  }
  if (/KeyMismatch|keys may not be consistent/.test(message)) {
    return "the key does not match the certificate";
  }
  if (/BadCertificate|bad certificate/i.test(message)) {
    return "the peer rejected the certificate";
  }
  if (/No keys found/.test(message)) return "no private key in the key file";
  if (/No certificates found/.test(message)) {
    return "no certificate in the certificate file";
  }
  return describeError(error);
}

/** Whether `error` came from TLS (a handshake or a certificate). */
export function isTlsError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : "";
  return /certificate|alert|KeyMismatch|keys may not|HandshakeFailure|tls/i
    .test(message);
}

/** What a TLS alert from the server most likely means, by its rustls name. */
const ALERT_HINTS: Record<string, string> = {
  CertificateRequired: "it requires a client certificate (--cert and --key)",
  UnknownCA: "it does not trust the CA of our client certificate",
  BadCertificate: "it refused our client certificate",
  CertificateUnknown: "it refused our client certificate",
  CertificateExpired: "it says our client certificate has expired",
  NoApplicationProtocol: "it speaks none of the --alpn protocols offered",
  HandshakeFailure:
    "it accepts nothing we offered (it may require a client certificate: --cert and --key)",
};

/**
 * The one-line cause of a TLS alert the server sent, or `undefined` if
 * `error` is not one: the server's verdict (on our client certificate, say),
 * which {@linkcode describeTlsError} would read as a fault of the server's
 * certificate (`UnknownCA`). With TLS 1.2 it ends the handshake, so it is
 * the cause of a {@linkcode ConnectError}; with TLS 1.3 a client's handshake
 * is done before the server has judged its certificate, and the first read
 * or write meets the alert, after {@linkcode connect} has returned.
 *
 * @param error What a read or write threw.
 * @returns The cause, as `the server refused the TLS session (alert
 * CertificateRequired): it requires a client certificate (--cert and --key)`.
 *
 * @example
 * ```ts
 * import { describeTlsAlert } from "./_tls_errors.ts";
 *
 * console.log(describeTlsAlert(new Error("received fatal alert: UnknownCA")));
 * ```
 */
export function describeTlsAlert(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const alert = message.match(/received fatal alert: (\w+)/)?.[1];
  if (alert === undefined) return undefined;
  const hint = ALERT_HINTS[alert];
  return `the server refused the TLS session (alert ${alert})${
    hint ? `: ${hint}` : ""
  }`;
}

/**
 * The one-line cause of a TLS handshake the server hung up on (reset or
 * closed, no alert read: it sent none, or our next write met the reset
 * first), or `undefined` if `error` is not that.
 */
function describeTlsHangup(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (
    !isPeerGone(error) &&
    !/unexpected ?eof|peer closed connection/i.test(message)
  ) return undefined;
  return "the server closed the connection during the TLS handshake (it " +
    "may require a client certificate, --cert and --key, or not speak TLS)";
}

/** A peer whose answer to our ClientHello is not TLS, or `undefined`. */
function describeNotTls(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (/got ClientHello when expecting/.test(message)) {
    return "the server sent our ClientHello back: it does not speak TLS " +
      "(an echo server without --tls?)";
  }
  if (/InvalidContentType|wrong version number/.test(message)) {
    return "the server does not speak TLS (what it sent is no TLS record)";
  }
  return undefined;
}

/**
 * The one-line cause of a failed TLS connect as the client sees the server
 * refuse it, or `undefined` when the cause is the client's own finding
 * (then {@linkcode ConnectError}'s `reason` says it): the server's alert
 * ({@linkcode describeTlsAlert}), a hang-up during the handshake, or a
 * server that does not speak TLS. For the cause of a `ConnectError` over
 * TLS, or a `node:tls` connect error; after the handshake a reset is only a
 * reset.
 *
 * @param error The cause of a failed TLS connect.
 * @returns The cause, as `the server closed the connection during the TLS
 * handshake (...)`, or `undefined`.
 *
 * @example
 * ```ts
 * import { describeTlsConnectFailure } from "./_tls_errors.ts";
 *
 * console.log(describeTlsConnectFailure(new Deno.errors.BrokenPipe("Broken pipe")));
 * ```
 */
export function describeTlsConnectFailure(error: unknown): string | undefined {
  return describeTlsAlert(error) ?? describeTlsHangup(error) ??
    describeNotTls(error);
}
