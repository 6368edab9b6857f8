/**
 * Opening `--output otlp`: the settings from the flag and the environment, the
 * certificates read as files that steer a root process are (trusted owner and
 * mode), an HTTP client that trusts the given CA, and one probe of the collector
 * so that the start-up line can say whether it answers. A collector that is down
 * does not stop the start: its records wait in the queue.
 * @module
 */
import { UsageError } from "../usage_error.ts";
import { VERSION } from "../version.ts";
import { readTrustedText } from "../config/trusted_file.ts";
import { otlpConfig } from "./otlp_config.ts";
import { httpPost, OtlpRenderer } from "./otlp.ts";

/** A PEM file is small; one larger than this is not one. */
const MAX_PEM_BYTES = 1 << 20;

async function pem(path: string, what: string): Promise<string> {
  try {
    return await readTrustedText(path, { what, maxBytes: MAX_PEM_BYTES });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${path}: cannot read the ${what} (${e instanceof Error ? e.message : e})`);
  }
}

/** The exporter, and how the start-up line names it. */
export async function openOtlp(
  endpoint: string,
  log: (line: string) => void,
  clock: () => bigint,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<{ renderer: OtlpRenderer; describe: string }> {
  const c = otlpConfig(endpoint, env, Deno.hostname());
  let client: Deno.HttpClient | undefined;
  if (c.certificate || c.clientCertificate || c.clientKey) {
    if (!c.clientCertificate !== !c.clientKey) {
      throw new UsageError(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together: give both or neither",
      );
    }
    const ca = c.certificate ? [await pem(c.certificate, "CA certificate")] : undefined;
    const cert = c.clientCertificate ? await pem(c.clientCertificate, "client certificate") : undefined;
    const key = c.clientKey ? await pem(c.clientKey, "client key") : undefined;
    try {
      client = Deno.createHttpClient({ ...(ca ? { caCerts: ca } : {}), ...(cert && key ? { cert, key } : {}) });
    } catch (e) {
      throw new UsageError(`the OTLP certificates cannot be used: ${e instanceof Error ? e.message : e}`);
    }
  }
  const renderer = new OtlpRenderer(c, httpPost(c, client), log, { name: "lightmon", version: VERSION }, clock);
  const down = await renderer.probe();
  const how = `${c.protocol}${c.gzip ? ", gzip" : ""}`;
  const state = down ? `; the collector is not answering (${down}): records wait in the queue until it does` : "";
  return { renderer, describe: `otlp to ${c.url} (${how})${state}` };
}
