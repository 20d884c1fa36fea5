# ActiveRecord program of the pgcloak ORM matrix (integration/orm_test.go).
#
# Runs the matrix scenario with ActiveRecord (ruby-pg) against ORM_DB_* and
# prints one JSON line per step. ORM_PHASE is main (every CRUD step, ending
# with db/migrate adding a protected column) or migrated (the new column
# written and read).
require 'active_record'
require 'bigdecimal'
require 'date'
require 'json'
require 'pg'

MIGRATED = ENV.fetch('ORM_PHASE') == 'migrated'

ActiveRecord::Base.establish_connection(
  adapter: 'postgresql', host: ENV.fetch('ORM_DB_HOST'), port: ENV.fetch('ORM_DB_PORT').to_i,
  database: ENV.fetch('ORM_DB_NAME'), username: ENV.fetch('ORM_DB_USER'), sslmode: 'disable'
)

# ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement on stderr.
ActiveRecord::Base.logger = Logger.new($stderr) if ENV['ORM_SQL_LOG'] == '1'

class Customer < ActiveRecord::Base
  self.table_name = 'customers'
  self.locking_column = :version
  has_many :orders
  # ActiveRecord takes column types from the catalog, where pgcloak's
  # protected columns are bytea: declare the logical types, or it would
  # treat them as binary strings.
  attribute :email, :string
  attribute :full_name, :string
  attribute :phone, :string
  attribute :birth_date, :date
  attribute :credit_limit, :decimal, precision: 12, scale: 2
  attribute :nickname, :string if MIGRATED
end

class Order < ActiveRecord::Base
  self.table_name = 'orders'
  belongs_to :customer
  attribute :note, :string
end

ALICE = { email: 'alice@example.com', full_name: 'Alice Liddell', phone: '+44 20 7946 0001',
          birth_date: Date.new(1990, 4, 1), credit_limit: BigDecimal('1200.50'), tier: 'gold' }.freeze
BOB = { email: 'bob@example.com', full_name: 'Bob Müller', phone: '+49 30 1234567',
        birth_date: Date.new(1985, 12, 24), credit_limit: BigDecimal('300.00'), tier: 'basic' }.freeze
CAROL = { email: 'carol@example.com', full_name: "Carol O'Brien", phone: nil,
          birth_date: Date.new(2001, 2, 28), credit_limit: nil, tier: 'gold' }.freeze
DAVE = { email: 'dave@example.com', full_name: 'Dave 山田', phone: '+81 3 1234 5678',
         birth_date: nil, credit_limit: BigDecimal('0.00'), tier: 'basic' }.freeze
ERIN = { full_name: 'Erin Example', phone: nil, birth_date: Date.new(1999, 9, 9),
         credit_limit: BigDecimal('50.00'), tier: 'basic' }.freeze
FRANK = { email: 'frank@example.com', full_name: 'Frank Rolledback', phone: '+1 555 0100',
          birth_date: Date.new(1970, 1, 1), credit_limit: BigDecimal('10.00') }.freeze
GINA = { email: 'gina@example.com', full_name: 'Gina Saved', phone: '+1 555 0101',
         birth_date: Date.new(1980, 5, 5), credit_limit: BigDecimal('20.00') }.freeze
HANK = { email: 'hank@example.com', full_name: 'Hank Savepoint' }.freeze

class Skip < StandardError; end

def cell(v)
  case v
  when nil then nil
  when BigDecimal then v.to_s('F')
  when Date, Time then v.iso8601
  else v.to_s
  end
end

def emit(obj)
  $stdout.puts(JSON.generate(obj))
  $stdout.flush
end

def step(name)
  rows = yield
  emit(step: name, ok: true, rows: rows.map { |r| r.map { |v| cell(v) } })
rescue Skip => e
  emit(step: name, skip: e.message)
rescue StandardError => e # the step's outcome, compared by the test
  res = e.cause.respond_to?(:result) ? e.cause.result : nil
  if res
    emit(step: name, ok: false, sqlstate: res.error_field(PG::Result::PG_DIAG_SQLSTATE),
         error: res.error_field(PG::Result::PG_DIAG_MESSAGE_PRIMARY),
         detail: res.error_field(PG::Result::PG_DIAG_MESSAGE_DETAIL) || '')
  else
    emit(step: name, ok: false, error: "#{e.class}: #{e.message}")
  end
end

def row(c)
  [c.id, c.email, c.full_name, c.phone, c.birth_date, c.credit_limit, c.tier]
end

def by_email(e)
  Customer.find_by!(email: e)
end

def main_phase
  step('create') { [row(Customer.create!(ALICE).reload)] }
  step('bulk_create') do
    Customer.insert_all!([BOB, CAROL, DAVE], returning: %w[id email]).rows
  end
  step('create_orders') do
    a, b, c = %w[alice bob carol].map { |n| by_email("#{n}@example.com") }
    Order.create!(customer: a, product: 'widget', quantity: 2, note: 'gift wrap, leave at door')
    Order.create!(customer: b, product: 'gadget', quantity: 1)
    Order.create!(customer: c, product: 'widget', quantity: 5, note: 'call before delivery')
    Order.order(:id).map { |o| [o.id, o.customer_id, o.product, o.quantity, o.note] }
  end
  step('get_by_email') { [row(by_email('bob@example.com'))] }
  step('in_list') do
    Customer.where(email: %w[alice@example.com carol@example.com nobody@example.com]).order(:id).map { |c| row(c) }
  end
  step('update') do
    a = by_email('alice@example.com')
    a.update!(full_name: 'Alice Liddell-Smith', phone: '+44 20 7946 0999')
    [row(a.reload)]
  end
  step('bulk_update') do
    n = Customer.where(tier: 'gold').update_all(credit_limit: BigDecimal('2500.00'))
    [[n]] + Customer.where(tier: 'gold').order(:id).map { |c| row(c) }
  end
  step('get_or_create') do
    c = Customer.find_or_create_by!(email: 'bob@example.com') { |n| n.full_name = 'not used' }
    [row(c) + [c.previously_new_record?]]
  end
  step('get_or_create_new') do
    c = Customer.find_or_create_by!(email: 'erin@example.com') { |n| n.assign_attributes(ERIN) }
    [row(c.reload) + [c.previously_new_record?]]
  end
  # create_or_find_by: INSERT in a savepoint first, SELECT after a unique
  # violation (rolled back to the savepoint).
  step('create_or_find') do
    c = Customer.create_or_find_by!(email: 'bob@example.com') { |n| n.full_name = 'not used' }
    [row(c) + [c.previously_new_record?]]
  end
  step('count') { [[Customer.count], [Customer.where(tier: 'gold').count]] }
  step('pagination') { Customer.order(:id).limit(2).offset(1).map { |c| row(c) } }
  step('is_null') { Customer.where(phone: nil).order(:id).map { |c| row(c) } }
  step('eager_join') do
    Order.eager_load(:customer).order(:id).map { |o| [o.id, o.product, o.note, o.customer.email, o.customer.full_name] }
  end
  step('related_filter') do
    Customer.joins(:orders).where(orders: { product: 'widget' }).order(:id).map { |c| row(c) }
  end
  step('exists') { [[Customer.exists?(email: 'carol@example.com')], [Customer.exists?(email: 'zed@example.com')]] }
  step('unique_violation') { [row(Customer.create!(email: 'bob@example.com', full_name: 'Bob Again'))] }
  step('raw_sql') do
    found = Customer.find_by_sql(['SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = ?',
                                  'bob@example.com']).map { |c| [c.id, c.email, c.full_name, c.birth_date, c.credit_limit] }
    str = ActiveRecord::Type::String.new
    binds = %w[alice@example.com carol@example.com].map { |e| ActiveRecord::Relation::QueryAttribute.new('email', e, str) }
    found + Customer.connection.exec_query('SELECT full_name, phone FROM customers WHERE email IN ($1, $2) ORDER BY id',
                                           'raw', binds).rows
  end
  step('rollback') do
    Customer.transaction do
      Customer.create!(FRANK)
      raise ActiveRecord::Rollback
    end
    [[Customer.exists?(email: 'frank@example.com')], [Customer.count]]
  end
  step('savepoint') do
    Customer.transaction do
      Customer.create!(GINA)
      Customer.transaction(requires_new: true) do
        Customer.create!(HANK)
        raise ActiveRecord::Rollback
      end
    end
    [[Customer.exists?(email: 'gina@example.com')], [Customer.exists?(email: 'hank@example.com')]]
  end
  step('optimistic_lock') do
    a1 = by_email('alice@example.com')
    a2 = by_email('alice@example.com')
    a1.update!(full_name: 'Alice A')
    second = begin
      a2.update!(full_name: 'Alice B')
      'saved'
    rescue ActiveRecord::StaleObjectError => e
      e.class.name
    end
    [['saved'], [second], row(by_email('alice@example.com'))]
  end
  step('delete') do
    by_email('dave@example.com').destroy!
    [[Customer.exists?(email: 'dave@example.com')]]
  end
  step('order_by_randomized') { Customer.order(:full_name).map { |c| row(c) } }
  step('like_randomized') { Customer.where('full_name LIKE ?', 'A%').order(:id).map { |c| row(c) } }
  step('full_dump') do
    Customer.order(:id).map { |c| ['customer'] + row(c) } +
      Order.order(:id).map { |o| ['order', o.id, o.customer_id, o.product, o.quantity, o.note] }
  end
  step('migrate') do
    ActiveRecord::Migration.verbose = false
    ActiveRecord::MigrationContext.new(File.join(__dir__, 'db', 'migrate'), ActiveRecord::SchemaMigration).migrate
    [['migrated']]
  end
end

def migrated_phase
  step('migrated_write') do
    a = by_email('alice@example.com')
    a.update!(nickname: 'Ally')
    ivy = Customer.create!(email: 'ivy@example.com', full_name: 'Ivy Migrated', nickname: 'Ivy 🌿')
    [[a.id], [ivy.id]]
  end
  step('migrated_read') do
    Customer.order(:id).map { |c| [c.id, c.email, c.nickname] } +
      Customer.where.not(nickname: nil).order(:id).map { |c| [c.id] }
  end
end

emit(step: 'version', rows: [["ActiveRecord #{ActiveRecord.version} (pg #{PG::VERSION})"]])
MIGRATED ? migrated_phase : main_phase
