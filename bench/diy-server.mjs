// The do-it-yourself baseline of issue 19, never shipped: the Fastify + pg + node:crypto service a team would write
// in a day. One INSERT per tokenize, one SELECT per detokenize, AES-256-GCM under one key, a JWT check on every
// request; no audit, no throttling, no key hierarchy, no coalescing. With ECHO=1 it only answers the body back
// after the same JWT check: the floor a request of any service on this stack costs.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fastifyJwt from '@fastify/jwt';
import Fastify from 'fastify';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import pg from 'pg';

const { JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, DATABASE_URL, ECHO } = process.env;
const app = Fastify({ logger: false });
await app.register(fastifyJwt, { secret: JWT_SECRET, verify: { algorithms: ['HS256'], allowedIss: JWT_ISSUER, allowedAud: JWT_AUDIENCE } });
app.addHook('onRequest', async (request, reply) => {
  try {
    await request.jwtVerify();
  } catch {
    return reply.code(401).send({ error: 'unauthorized' });
  }
});

if (ECHO) {
  app.post('/echo', async (request) => request.body);
} else {
  const key = randomBytes(32);
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 20 });
  await pool.query('CREATE TABLE IF NOT EXISTS diy_tokens (token text PRIMARY KEY, sealed bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())');

  app.post('/tokenize', async (request, reply) => {
    const parsed = parsePhoneNumberFromString(String(request.body?.phone ?? ''));
    if (!parsed?.isValid()) return reply.code(400).send({ error: 'invalid phone' });
    const token = `tok_${randomBytes(16).toString('base64url')}`;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(token));
    const sealed = Buffer.concat([iv, cipher.update(parsed.number, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    await pool.query({ name: 'insert', text: 'INSERT INTO diy_tokens (token, sealed) VALUES ($1, $2)', values: [token, sealed] });
    return reply.code(201).send({ token });
  });

  app.post('/detokenize', async (request, reply) => {
    const token = String(request.body?.token ?? '');
    const { rows } = await pool.query({ name: 'select', text: 'SELECT sealed FROM diy_tokens WHERE token = $1', values: [token] });
    if (rows.length === 0) return reply.code(404).send({ error: 'not found' });
    const sealed = rows[0].sealed;
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
    decipher.setAAD(Buffer.from(token));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const phone = Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]).toString('utf8');
    return { phone };
  });
}

const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${address}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
