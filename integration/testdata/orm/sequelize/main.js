// Sequelize program of the pgcloak ORM matrix (integration/orm_test.go).
//
// Runs the matrix scenario with Sequelize (node-postgres underneath) against
// ORM_DB_* and prints one JSON line per step. ORM_PHASE is main (every CRUD
// step, ending with a migration's queryInterface.addColumn adding a
// protected column) or migrated (the new column written and read).
'use strict';
const { Sequelize, DataTypes, Op, QueryTypes } = require('sequelize');

const MIGRATED = process.env.ORM_PHASE === 'migrated';
const sequelize = new Sequelize(process.env.ORM_DB_NAME, process.env.ORM_DB_USER, '', {
  host: process.env.ORM_DB_HOST,
  port: Number(process.env.ORM_DB_PORT),
  dialect: 'postgres',
  // ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement on stderr.
  logging: process.env.ORM_SQL_LOG === '1' ? (sql, opts) => console.error(sql, JSON.stringify((opts && opts.bind) || [])) : false,
});

// The model declares the logical types pgcloak's config gives the protected
// columns: PostgreSQL holds them as bytea, the application sees these types.
const Customer = sequelize.define('Customer', {
  email: { type: DataTypes.TEXT, allowNull: false, unique: true },
  fullName: { type: DataTypes.TEXT, allowNull: false, field: 'full_name' },
  phone: { type: DataTypes.STRING(32) },
  birthDate: { type: DataTypes.DATEONLY, field: 'birth_date' },
  creditLimit: { type: DataTypes.DECIMAL(12, 2), field: 'credit_limit' },
  tier: { type: DataTypes.TEXT, allowNull: false, defaultValue: 'basic' },
  ...(MIGRATED ? { nickname: { type: DataTypes.TEXT } } : {}),
}, { tableName: 'customers', timestamps: false, version: true });

const Order = sequelize.define('Order', {
  customerId: { type: DataTypes.INTEGER, allowNull: false, field: 'customer_id' },
  product: { type: DataTypes.TEXT, allowNull: false },
  quantity: { type: DataTypes.INTEGER, allowNull: false },
  note: { type: DataTypes.TEXT },
}, { tableName: 'orders', timestamps: false });
Customer.hasMany(Order, { foreignKey: 'customerId', as: 'orders' });
Order.belongsTo(Customer, { foreignKey: 'customerId', as: 'customer' });

// The migration, as sequelize-cli would run it.
const addNickname = {
  async up(queryInterface) {
    // bytea behind pgcloak (BLOB), text in the plaintext twin.
    const type = process.env.ORM_PROTECTED === '1' ? DataTypes.BLOB : DataTypes.TEXT;
    await queryInterface.addColumn('customers', 'nickname', { type, allowNull: true });
  },
};

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
    const pg = e.parent || e.original;
    if (pg && pg.code) {
      emit({ step: name, ok: false, sqlstate: pg.code, error: pg.message, detail: pg.detail || '' });
    } else {
      emit({ step: name, ok: false, error: `${e.name}: ${e.message}` });
    }
  }
}

const row = (c) => [c.id, c.email, c.fullName, c.phone, c.birthDate, c.creditLimit, c.tier];
const byEmail = (email) => Customer.findOne({ where: { email }, rejectOnEmpty: true });
const has = async (email) => (await Customer.count({ where: { email } })) > 0;
const customers = async (opts) => (await Customer.findAll(opts)).map(row);

async function mainPhase() {
  await step('create', async () => {
    const c = await Customer.create(ALICE);
    return [row(await Customer.findByPk(c.id))];
  });
  await step('bulk_create', async () => (await Customer.bulkCreate([BOB, CAROL, DAVE])).map((c) => [c.id, c.email]));
  await step('create_orders', async () => {
    const [a, b, c] = await Promise.all(['alice', 'bob', 'carol'].map((n) => byEmail(`${n}@example.com`)));
    await Order.create({ customerId: a.id, product: 'widget', quantity: 2, note: 'gift wrap, leave at door' });
    await Order.create({ customerId: b.id, product: 'gadget', quantity: 1 });
    await Order.create({ customerId: c.id, product: 'widget', quantity: 5, note: 'call before delivery' });
    return (await Order.findAll({ order: [['id', 'ASC']] })).map((o) => [o.id, o.customerId, o.product, o.quantity, o.note]);
  });
  await step('get_by_email', async () => [row(await byEmail('bob@example.com'))]);
  await step('in_list', () => customers({
    where: { email: { [Op.in]: ['alice@example.com', 'carol@example.com', 'nobody@example.com'] } }, order: [['id', 'ASC']] }));
  await step('update', async () => {
    const a = await byEmail('alice@example.com');
    await a.update({ fullName: 'Alice Liddell-Smith', phone: '+44 20 7946 0999' });
    return [row(await byEmail('alice@example.com'))];
  });
  await step('bulk_update', async () => {
    const [n] = await Customer.update({ creditLimit: '2500.00' }, { where: { tier: 'gold' } });
    return [[n], ...await customers({ where: { tier: 'gold' }, order: [['id', 'ASC']] })];
  });
  await step('get_or_create', async () => {
    const [c, created] = await Customer.findOrCreate({ where: { email: 'bob@example.com' }, defaults: { fullName: 'not used' } });
    return [[...row(c), created]];
  });
  // findOrCreate's INSERT runs inside a temporary plpgsql function
  // (pg_temp.testfunc), which pgcloak refuses.
  await step('get_or_create_new', async () => {
    const [c, created] = await Customer.findOrCreate({ where: { email: 'erin@example.com' }, defaults: ERIN });
    return [[...row(await Customer.findByPk(c.id)), created]];
  });
  // The fix: findCreateFind (SELECT, plain INSERT, SELECT again after a
  // unique violation). It prints the row only: directly erin exists by now
  // (findOrCreate made her), through pgcloak this creates her.
  await step('get_or_create_new_fix', async () => {
    const [c] = await Customer.findCreateFind({ where: { email: 'erin@example.com' }, defaults: ERIN });
    return [row(await Customer.findByPk(c.id))];
  });
  await step('count', async () => [[await Customer.count()], [await Customer.count({ where: { tier: 'gold' } })]]);
  await step('pagination', () => customers({ order: [['id', 'ASC']], limit: 2, offset: 1 }));
  await step('is_null', () => customers({ where: { phone: null }, order: [['id', 'ASC']] }));
  await step('eager_join', async () => (await Order.findAll({ include: [{ model: Customer, as: 'customer' }], order: [['id', 'ASC']] }))
    .map((o) => [o.id, o.product, o.note, o.customer.email, o.customer.fullName]));
  await step('related_filter', () => customers({
    include: [{ model: Order, as: 'orders', where: { product: 'widget' }, attributes: [] }], order: [['id', 'ASC']] }));
  await step('exists', async () => [[await has('carol@example.com')], [await has('zed@example.com')]]);
  await step('unique_violation', async () => [row(await Customer.create({ email: 'bob@example.com', fullName: 'Bob Again' }))]);
  await step('raw_sql', async () => {
    const found = await sequelize.query('SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = :e',
      { replacements: { e: 'bob@example.com' }, type: QueryTypes.SELECT });
    const bound = await sequelize.query('SELECT full_name, phone FROM customers WHERE email IN ($1, $2) ORDER BY id',
      { bind: ['alice@example.com', 'carol@example.com'], type: QueryTypes.SELECT });
    return [...found.map((r) => [r.id, r.email, r.full_name, r.birth_date, r.credit_limit]),
      ...bound.map((r) => [r.full_name, r.phone])];
  });
  await step('rollback', async () => {
    try {
      await sequelize.transaction(async (t) => {
        await Customer.create(FRANK, { transaction: t });
        throw new Rollback();
      });
    } catch (e) {
      if (!(e instanceof Rollback)) throw e;
    }
    return [[await has('frank@example.com')], [await Customer.count()]];
  });
  await step('savepoint', async () => {
    await sequelize.transaction(async (t) => {
      await Customer.create(GINA, { transaction: t });
      try {
        await sequelize.transaction({ transaction: t }, async (sp) => { // SAVEPOINT
          await Customer.create(HANK, { transaction: sp });
          throw new Rollback();
        });
      } catch (e) {
        if (!(e instanceof Rollback)) throw e;
      }
    });
    return [[await has('gina@example.com')], [await has('hank@example.com')]];
  });
  await step('optimistic_lock', async () => {
    const a1 = await byEmail('alice@example.com');
    const a2 = await byEmail('alice@example.com');
    await a1.update({ fullName: 'Alice A' });
    let second = 'saved';
    try {
      await a2.update({ fullName: 'Alice B' });
    } catch (e) {
      second = e.name;
    }
    return [['saved'], [second], row(await byEmail('alice@example.com'))];
  });
  await step('delete', async () => [[await Customer.destroy({ where: { email: 'dave@example.com' } })],
    [await has('dave@example.com')]]);
  await step('order_by_randomized', () => customers({ order: [['fullName', 'ASC']] }));
  await step('like_randomized', () => customers({ where: { fullName: { [Op.like]: 'A%' } }, order: [['id', 'ASC']] }));
  await step('full_dump', async () => [
    ...(await Customer.findAll({ order: [['id', 'ASC']] })).map((c) => ['customer', ...row(c)]),
    ...(await Order.findAll({ order: [['id', 'ASC']] })).map((o) => ['order', o.id, o.customerId, o.product, o.quantity, o.note])]);
  await step('migrate', async () => {
    await addNickname.up(sequelize.getQueryInterface(), Sequelize);
    return [['migrated']];
  });
}

async function migratedPhase() {
  await step('migrated_write', async () => {
    const a = await byEmail('alice@example.com');
    await a.update({ nickname: 'Ally' });
    const ivy = await Customer.create({ email: 'ivy@example.com', fullName: 'Ivy Migrated', nickname: 'Ivy 🌿' });
    return [[a.id], [ivy.id]];
  });
  await step('migrated_read', async () => [
    ...(await Customer.findAll({ order: [['id', 'ASC']] })).map((c) => [c.id, c.email, c.nickname]),
    ...(await Customer.findAll({ where: { nickname: { [Op.ne]: null } }, order: [['id', 'ASC']] })).map((c) => [c.id])]);
}

(async () => {
  emit({ step: 'version', rows: [[`Sequelize ${require('sequelize/package.json').version} (pg ${require('pg/package.json').version})`]] });
  await (MIGRATED ? migratedPhase() : mainPhase());
  await sequelize.close();
})().catch((e) => { console.error(e); process.exit(1); });
