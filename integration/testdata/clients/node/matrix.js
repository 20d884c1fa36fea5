'use strict';
// node-postgres client of the pgcloak client matrix (integration/matrix_node_test.go):
//
//     node matrix.js DSN PLAN [named]
//
// Runs the plan (see writeMatrixPlan) with parameterised queries and prints
// what it reads back as JSON: {"errors": [...], "rows": [[id, note, cell...]]},
// each cell the JavaScript type and value. With "named" the INSERT, UPDATE
// and SELECT are named prepared statements (parsed once per connection).
const fs = require('fs');
const { Client } = require('pg');

const text = (field) => (field === '\\N' ? null : Buffer.from(field, 'hex').toString('utf8'));

// param is a test value as the JavaScript value an application passes.
function param(kind, s) {
  if (s === null) return null;
  switch (kind) {
    case 'int2':
    case 'int4':
    case 'float8':
      return Number(s);
    case 'int8':
      return BigInt(s);
    case 'bool':
      return s === 'true';
    case 'timestamptz':
      return new Date(s.replace(' ', 'T'));
    case 'bytea':
      return Buffer.from(s.slice(2), 'hex'); // sent in binary format
    default:
      // text, varchar, bpchar, numeric, date, timestamp, uuid, and jsonb as
      // JSON text (pg would turn a JS array into a PostgreSQL array)
      return s;
  }
}

function show(v) {
  if (v === null) return null;
  if (Buffer.isBuffer(v)) return 'Buffer:' + v.toString('hex');
  if (v instanceof Date) return 'Date:' + (isNaN(v) ? 'Invalid Date' : v.toISOString());
  if (typeof v === 'number') return 'number:' + (Object.is(v, -0) ? '-0' : String(v));
  if (typeof v === 'object') return 'json:' + JSON.stringify(v);
  return typeof v + ':' + String(v);
}

async function main() {
  const [dsn, planFile, mode] = process.argv.slice(2);
  const named = mode === 'named';
  const plan = fs.readFileSync(planFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
  const table = plan[0][1];
  const cols = plan[1].slice(1).map((c) => c.split(':'));
  const names = cols.map(([name]) => name).join(', ');
  const insert = `INSERT INTO ${table} (id, note, ${names}) VALUES (${Array.from({ length: cols.length + 2 }, (_, i) => '$' + (i + 1)).join(', ')})`;
  const update = `UPDATE ${table} SET ${cols.map(([name], i) => `${name} = $${i + 1}`).join(', ')} WHERE id = $${cols.length + 1}`;
  // A parameter, so that the SELECT too uses the extended protocol.
  const select = `SELECT id, note, ${names} FROM ${table} WHERE id > $1 ORDER BY id`;
  const query = (name, text, values) => (named ? { name, text, values } : { text, values });

  const client = new Client({ connectionString: dsn });
  await client.connect();
  const errors = [];
  for (const [n, f] of plan.slice(2).entries()) {
    try {
      if (f[0] === 'insert') {
        const values = [Number(f[1]), text(f[2]), ...cols.map(([, kind], i) => param(kind, text(f[i + 3])))];
        await client.query(query('matrix_insert', insert, values));
      } else if (f[0] === 'update') {
        const values = [...cols.map(([, kind], i) => param(kind, text(f[i + 2]))), Number(f[1])];
        await client.query(query('matrix_update', update, values));
      } else if (f[0] === 'exec') {
        await client.query(text(f[1]));
      }
    } catch (e) {
      const what = f[0] === 'exec' ? text(f[1]).slice(0, 300) : `${f[0]} id ${f[1]}`;
      errors.push(`step ${n}, ${what}: ${e.message}`);
    }
  }
  let rows = [];
  try {
    const res = await client.query({ ...query('matrix_select', select, [0]), rowMode: 'array' });
    rows = res.rows.map((r) => [String(r[0]), ...r.slice(1).map(show)]);
  } catch (e) {
    errors.push(`${select}: ${e.message}`);
  }
  await client.end();
  process.stdout.write(JSON.stringify({ errors, rows }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
