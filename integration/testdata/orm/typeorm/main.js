// TypeORM program of the pgcloak ORM matrix (integration/orm_test.go).
//
// Runs the matrix scenario with TypeORM (node-postgres underneath) against
// ORM_DB_* and prints one JSON line per step. ORM_PHASE is main (every CRUD
// step, ending with a TypeORM migration adding a protected column) or
// migrated (the new column written and read). Entities are EntitySchemas,
// so the program runs without a TypeScript build.
'use strict';
require('reflect-metadata');
const { DataSource, EntitySchema, In, IsNull, Like, Not, TableColumn } = require('typeorm');

const MIGRATED = process.env.ORM_PHASE === 'migrated';

// The entity declares the logical types pgcloak's config gives the
// protected columns: PostgreSQL holds them as bytea, the application sees
// these types.
const Customer = new EntitySchema({
  name: 'Customer',
  tableName: 'customers',
  columns: {
    id: { primary: true, type: 'int', generated: 'increment' },
    email: { type: 'text', unique: true },
    fullName: { type: 'text', name: 'full_name' },
    phone: { type: 'varchar', length: 32, nullable: true },
    birthDate: { type: 'date', name: 'birth_date', nullable: true },
    creditLimit: { type: 'numeric', precision: 12, scale: 2, name: 'credit_limit', nullable: true },
    tier: { type: 'text', default: 'basic' },
    version: { type: 'int', version: true },
    ...(MIGRATED ? { nickname: { type: 'text', nullable: true } } : {}),
  },
  relations: { orders: { type: 'one-to-many', target: 'Order', inverseSide: 'customer' } },
});

const Order = new EntitySchema({
  name: 'Order',
  tableName: 'orders',
  columns: {
    id: { primary: true, type: 'int', generated: 'increment' },
    customerId: { type: 'int', name: 'customer_id' },
    product: { type: 'text' },
    quantity: { type: 'int' },
    note: { type: 'text', nullable: true },
  },
  relations: { customer: { type: 'many-to-one', target: 'Customer', joinColumn: { name: 'customer_id' }, inverseSide: 'orders' } },
});

// The migration: the column is bytea behind pgcloak, text in the plaintext
// twin.
class AddNickname1700000000000 {
  async up(queryRunner) {
    const type = process.env.ORM_PROTECTED === '1' ? 'bytea' : 'text';
    await queryRunner.addColumn('customers', new TableColumn({ name: 'nickname', type, isNullable: true }));
  }

  async down(queryRunner) { await queryRunner.dropColumn('customers', 'nickname'); }
}

const ds = new DataSource({
  type: 'postgres',
  host: process.env.ORM_DB_HOST,
  port: Number(process.env.ORM_DB_PORT),
  username: process.env.ORM_DB_USER,
  database: process.env.ORM_DB_NAME,
  entities: [Customer, Order],
  migrations: [AddNickname1700000000000],
  synchronize: false,
  // ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement on stderr.
  logger: process.env.ORM_SQL_LOG === '1' ? {
    logQuery: (q, p) => console.error('SQL:', q, JSON.stringify(p || [])),
    logQueryError: (e, q, p) => console.error('SQL error:', String(e), q, JSON.stringify(p || [])),
    logQuerySlow() {}, logSchemaBuild() {}, logMigration() {}, log() {},
  } : undefined,
  logging: process.env.ORM_SQL_LOG === '1',
});

const ALICE = { email: 'alice@example.com', fullName: 'Alice Liddell', phone: '+44 20 7946 0001',
  birthDate: '1990-04-01', creditLimit: '1200.50', tier: 'gold' };
const BOB = { email: 'bob@example.com', fullName: 'Bob Müller', phone: '+49 30 1234567',
  birthDate: '1985-12-24', creditLimit: '300.00', tier: 'basic' };
const CAROL = { email: 'carol@example.com', fullName: "Carol O'Brien", phone: null,
  birthDate: '2001-02-28', creditLimit: null, tier: 'gold' };
const DAVE = { email: 'dave@example.com', fullName: 'Dave 山田', phone: '+81 3 1234 5678',
  birthDate: null, creditLimit: '0.00', tier: 'basic' };
const ERIN = { fullName: 'Erin Example', phone: null, birthDate: '1999-09-09', creditLimit: '50.00', tier: 'basic' };
const FRANK = { email: 'frank@example.com', fullName: 'Frank Rolledback', phone: '+1 555 0100',
  birthDate: '1970-01-01', creditLimit: '10.00' };
const GINA = { email: 'gina@example.com', fullName: 'Gina Saved', phone: '+1 555 0101',
  birthDate: '1980-05-05', creditLimit: '20.00' };
const HANK = { email: 'hank@example.com', fullName: 'Hank Savepoint' };

class Skip extends Error {}
class Rollback extends Error {}

function cell(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

async function step(name, fn) {
  try {
    const rows = await fn();
    emit({ step: name, ok: true, rows: rows.map((r) => r.map(cell)) });
  } catch (e) {
    if (e instanceof Skip) {
      emit({ step: name, skip: e.message });
      return;
    }
    const pg = e.driverError;
    if (pg && pg.code) {
      emit({ step: name, ok: false, sqlstate: pg.code, error: pg.message, detail: pg.detail || '' });
    } else {
      emit({ step: name, ok: false, error: `${e.name}: ${e.message}` });
    }
  }
}

const customers = () => ds.getRepository(Customer);
const orders = () => ds.getRepository(Order);
const row = (c) => [c.id, c.email, c.fullName, c.phone, c.birthDate, c.creditLimit, c.tier];
const byEmail = (email) => customers().findOneByOrFail({ email });
const has = (email) => customers().existsBy({ email });
const list = async (opts) => (await customers().find(opts)).map(row);

async function mainPhase() {
  const repo = customers();
  await step('create', async () => {
    const c = await repo.save(repo.create(ALICE));
    return [row(await repo.findOneByOrFail({ id: c.id }))];
  });
  await step('bulk_create', async () => {
    const res = await repo.insert([BOB, CAROL, DAVE]);
    return res.identifiers.map((id, i) => [id.id, [BOB, CAROL, DAVE][i].email]);
  });
  await step('create_orders', async () => {
    const [a, b, c] = await Promise.all(['alice', 'bob', 'carol'].map((n) => byEmail(`${n}@example.com`)));
    await orders().save([
      { customerId: a.id, product: 'widget', quantity: 2, note: 'gift wrap, leave at door' },
      { customerId: b.id, product: 'gadget', quantity: 1 },
      { customerId: c.id, product: 'widget', quantity: 5, note: 'call before delivery' }]);
    return (await orders().find({ order: { id: 'ASC' } })).map((o) => [o.id, o.customerId, o.product, o.quantity, o.note]);
  });
  await step('get_by_email', async () => [row(await byEmail('bob@example.com'))]);
  await step('in_list', () => list({
    where: { email: In(['alice@example.com', 'carol@example.com', 'nobody@example.com']) }, order: { id: 'ASC' } }));
  await step('update', async () => {
    const a = await byEmail('alice@example.com');
    a.fullName = 'Alice Liddell-Smith';
    a.phone = '+44 20 7946 0999';
    await repo.save(a);
    return [row(await byEmail('alice@example.com'))];
  });
  await step('bulk_update', async () => {
    const res = await repo.update({ tier: 'gold' }, { creditLimit: '2500.00' });
    return [[res.affected], ...await list({ where: { tier: 'gold' }, order: { id: 'ASC' } })];
  });
  // TypeORM has no get-or-create: the usual recipe is findOneBy, then save.
  const getOrCreate = async (email, defaults) => {
    const found = await repo.findOneBy({ email });
    if (found) return [found, false];
    return [await repo.save(repo.create({ email, ...defaults })), true];
  };
  await step('get_or_create', async () => {
    const [c, created] = await getOrCreate('bob@example.com', { fullName: 'not used' });
    return [[...row(c), created]];
  });
  await step('get_or_create_new', async () => {
    const [c, created] = await getOrCreate('erin@example.com', ERIN);
    return [[...row(await repo.findOneByOrFail({ id: c.id })), created]];
  });
  // upsert: INSERT … ON CONFLICT ("email") DO UPDATE SET "phone" =
  // EXCLUDED."phone", … (the query builder's orUpdate: repository.upsert
  // also sets "id" = EXCLUDED."id", a fresh serial, which the orders'
  // foreign key refuses, pgcloak or not).
  await step('upsert', async () => {
    await repo.createQueryBuilder().insert().into(Customer).values({ ...BOB, phone: '+49 30 7654321' })
      .orUpdate(['full_name', 'phone'], ['email']).execute();
    return [row(await byEmail('bob@example.com'))];
  });
  await step('count', async () => [[await repo.count()], [await repo.countBy({ tier: 'gold' })]]);
  await step('pagination', () => list({ order: { id: 'ASC' }, skip: 1, take: 2 }));
  await step('is_null', () => list({ where: { phone: IsNull() }, order: { id: 'ASC' } }));
  await step('eager_join', async () => (await orders().find({ relations: { customer: true }, order: { id: 'ASC' } }))
    .map((o) => [o.id, o.product, o.note, o.customer.email, o.customer.fullName]));
  await step('related_filter', async () => (await repo.createQueryBuilder('c').innerJoin('c.orders', 'o')
    .where('o.product = :p', { p: 'widget' }).orderBy('c.id').getMany()).map(row));
  await step('exists', async () => [[await has('carol@example.com')], [await has('zed@example.com')]]);
  await step('unique_violation', async () => {
    await repo.insert({ email: 'bob@example.com', fullName: 'Bob Again' });
    return [['inserted']];
  });
  await step('raw_sql', async () => {
    const found = await ds.query('SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = $1',
      ['bob@example.com']);
    const pair = await ds.query('SELECT full_name, phone FROM customers WHERE email IN ($1, $2) ORDER BY id',
      ['alice@example.com', 'carol@example.com']);
    return [...found.map((r) => [r.id, r.email, r.full_name, r.birth_date, r.credit_limit]),
      ...pair.map((r) => [r.full_name, r.phone])];
  });
  await step('rollback', async () => {
    try {
      await ds.transaction(async (m) => {
        await m.save(Customer, m.create(Customer, FRANK));
        throw new Rollback();
      });
    } catch (e) {
      if (!(e instanceof Rollback)) throw e;
    }
    return [[await has('frank@example.com')], [await repo.count()]];
  });
  await step('savepoint', async () => {
    const qr = ds.createQueryRunner();
    try {
      await qr.startTransaction();
      await qr.manager.save(Customer, qr.manager.create(Customer, GINA));
      await qr.startTransaction(); // SAVEPOINT typeorm_1
      await qr.manager.save(Customer, qr.manager.create(Customer, HANK));
      await qr.rollbackTransaction(); // ROLLBACK TO SAVEPOINT
      await qr.commitTransaction();
    } finally {
      await qr.release();
    }
    return [[await has('gina@example.com')], [await has('hank@example.com')]];
  });
  // TypeORM checks the version column only when an entity is loaded with an
  // optimistic lock for an expected version.
  await step('optimistic_lock', async () => {
    const a1 = await byEmail('alice@example.com');
    const seen = a1.version;
    a1.fullName = 'Alice A';
    await repo.save(a1);
    let second = 'loaded';
    try {
      await repo.findOne({ where: { id: a1.id }, lock: { mode: 'optimistic', version: seen } });
    } catch (e) {
      second = e.name;
    }
    return [['saved'], [second], row(await byEmail('alice@example.com'))];
  });
  await step('delete', async () => [[(await repo.delete({ email: 'dave@example.com' })).affected],
    [await has('dave@example.com')]]);
  await step('order_by_randomized', () => list({ order: { fullName: 'ASC' } }));
  await step('like_randomized', () => list({ where: { fullName: Like('A%') }, order: { id: 'ASC' } }));
  await step('full_dump', async () => [
    ...(await repo.find({ order: { id: 'ASC' } })).map((c) => ['customer', ...row(c)]),
    ...(await orders().find({ order: { id: 'ASC' } })).map((o) => ['order', o.id, o.customerId, o.product, o.quantity, o.note])]);
  await step('migrate', async () => (await ds.runMigrations()).map((m) => [m.name]));
}

async function migratedPhase() {
  const repo = customers();
  await step('migrated_write', async () => {
    const a = await byEmail('alice@example.com');
    a.nickname = 'Ally';
    await repo.save(a);
    const ivy = await repo.save(repo.create({ email: 'ivy@example.com', fullName: 'Ivy Migrated', nickname: 'Ivy 🌿' }));
    return [[a.id], [ivy.id]];
  });
  await step('migrated_read', async () => [
    ...(await repo.find({ order: { id: 'ASC' } })).map((c) => [c.id, c.email, c.nickname]),
    ...(await repo.find({ where: { nickname: Not(IsNull()) }, order: { id: 'ASC' } })).map((c) => [c.id])]);
}

// typeorm's package exports hide its package.json from require.
const version = (pkg) => JSON.parse(require('fs').readFileSync(`${__dirname}/node_modules/${pkg}/package.json`)).version;

(async () => {
  await ds.initialize();
  emit({ step: 'version', rows: [[`TypeORM ${version('typeorm')} (pg ${version('pg')})`]] });
  await (MIGRATED ? migratedPhase() : mainPhase());
  await ds.destroy();
})().catch((e) => { console.error(e); process.exit(1); });
