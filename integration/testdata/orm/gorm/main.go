// Command gorm is the GORM program of the pgcloak ORM matrix
// (integration/orm_test.go). It runs the matrix scenario with GORM (pgx
// underneath) against ORM_DB_* and prints one JSON line per step. ORM_PHASE
// is main (every CRUD step, ending with GORM's migrator adding a protected
// column) or migrated (the new column written and read).
//
// It is a Go module of its own so that the product's go.mod does not carry
// GORM.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Customer declares the logical types pgcloak's config gives the protected
// columns (email, full_name, phone, birth_date, credit_limit): PostgreSQL
// holds them as bytea, the application sees these types.
type Customer struct {
	ID          int
	Email       string
	FullName    string
	Phone       *string
	BirthDate   *time.Time `gorm:"type:date"`
	CreditLimit *string    `gorm:"type:numeric(12,2)"`
	Tier        string
	Version     int
	Orders      []Order
}

// Order's note is protected too.
type Order struct {
	ID         int
	CustomerID int
	Customer   *Customer
	Product    string
	Quantity   int
	Note       *string
}

// CustomerNick is Customer after the migration.
type CustomerNick struct {
	ID       int
	Email    string
	FullName string
	Nickname *string
}

func (CustomerNick) TableName() string { return "customers" }

// The migration's view of the new column: []byte is bytea in GORM's
// migrator (the column pgcloak protects), *string is text (the plaintext
// twin).
type nicknameCloak struct{ Nickname []byte }
type nicknamePlain struct{ Nickname *string }

func (nicknameCloak) TableName() string { return "customers" }
func (nicknamePlain) TableName() string { return "customers" }

func ptr[T any](v T) *T { return &v }

func date(s string) *time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return &t
}

var (
	alice = Customer{Email: "alice@example.com", FullName: "Alice Liddell", Phone: ptr("+44 20 7946 0001"),
		BirthDate: date("1990-04-01"), CreditLimit: ptr("1200.50"), Tier: "gold"}
	bob = Customer{Email: "bob@example.com", FullName: "Bob Müller", Phone: ptr("+49 30 1234567"),
		BirthDate: date("1985-12-24"), CreditLimit: ptr("300.00"), Tier: "basic"}
	carol = Customer{Email: "carol@example.com", FullName: "Carol O'Brien",
		BirthDate: date("2001-02-28"), Tier: "gold"}
	dave = Customer{Email: "dave@example.com", FullName: "Dave 山田", Phone: ptr("+81 3 1234 5678"),
		CreditLimit: ptr("0.00"), Tier: "basic"}
	erin  = Customer{FullName: "Erin Example", BirthDate: date("1999-09-09"), CreditLimit: ptr("50.00"), Tier: "basic"}
	frank = Customer{Email: "frank@example.com", FullName: "Frank Rolledback", Phone: ptr("+1 555 0100"),
		BirthDate: date("1970-01-01"), CreditLimit: ptr("10.00"), Tier: "basic"}
	gina = Customer{Email: "gina@example.com", FullName: "Gina Saved", Phone: ptr("+1 555 0101"),
		BirthDate: date("1980-05-05"), CreditLimit: ptr("20.00"), Tier: "basic"}
	hank = Customer{Email: "hank@example.com", FullName: "Hank Savepoint", Tier: "basic"}
)

type skip string

var errRollback = errors.New("roll back")

func cell(v any) *string {
	switch x := v.(type) {
	case nil:
		return nil
	case *string:
		return x
	case *time.Time:
		if x == nil {
			return nil
		}
		return ptr(x.Format("2006-01-02"))
	default:
		return ptr(fmt.Sprint(x))
	}
}

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(b, '\n'))
}

type line struct {
	Step     string      `json:"step"`
	OK       bool        `json:"ok"`
	Rows     [][]*string `json:"rows,omitempty"`
	SQLState string      `json:"sqlstate,omitempty"`
	Error    string      `json:"error,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Skip     string      `json:"skip,omitempty"`
}

func step(name string, fn func() ([][]any, error)) {
	rows, err := fn()
	var s skip
	var pg *pgconn.PgError
	switch {
	case errors.As(err, &s):
		emit(line{Step: name, Skip: string(s)})
	case errors.As(err, &pg):
		emit(line{Step: name, SQLState: pg.Code, Error: pg.Message, Detail: pg.Detail})
	case err != nil:
		emit(line{Step: name, Error: fmt.Sprintf("%T: %v", err, err)})
	default:
		out := make([][]*string, len(rows))
		for i, r := range rows {
			for _, v := range r {
				out[i] = append(out[i], cell(v))
			}
		}
		emit(line{Step: name, OK: true, Rows: out})
	}
}

func (s skip) Error() string { return string(s) }

func row(c Customer) []any {
	return []any{c.ID, c.Email, c.FullName, c.Phone, c.BirthDate, c.CreditLimit, c.Tier}
}

func rows(cs []Customer) [][]any {
	out := [][]any{}
	for _, c := range cs {
		out = append(out, row(c))
	}
	return out
}

var db *gorm.DB

func byEmail(e string) (Customer, error) {
	var c Customer
	err := db.Where("email = ?", e).First(&c).Error
	return c, err
}

func has(e string) (bool, error) {
	var b bool
	err := db.Model(&Customer{}).Select("count(*) > 0").Where("email = ?", e).Find(&b).Error
	return b, err
}

func find(q *gorm.DB) ([][]any, error) {
	var cs []Customer
	err := q.Find(&cs).Error
	return rows(cs), err
}

func mainPhase() {
	step("create", func() ([][]any, error) {
		c := alice
		if err := db.Create(&c).Error; err != nil {
			return nil, err
		}
		c, err := byEmail(c.Email)
		return [][]any{row(c)}, err
	})
	step("bulk_create", func() ([][]any, error) {
		cs := []Customer{bob, carol, dave}
		err := db.Create(&cs).Error
		var out [][]any
		for _, c := range cs {
			out = append(out, []any{c.ID, c.Email})
		}
		return out, err
	})
	step("create_orders", func() ([][]any, error) {
		var ids []int
		for _, e := range []string{"alice@example.com", "bob@example.com", "carol@example.com"} {
			c, err := byEmail(e)
			if err != nil {
				return nil, err
			}
			ids = append(ids, c.ID)
		}
		os := []Order{{CustomerID: ids[0], Product: "widget", Quantity: 2, Note: ptr("gift wrap, leave at door")},
			{CustomerID: ids[1], Product: "gadget", Quantity: 1},
			{CustomerID: ids[2], Product: "widget", Quantity: 5, Note: ptr("call before delivery")}}
		for i := range os {
			if err := db.Create(&os[i]).Error; err != nil {
				return nil, err
			}
		}
		var got []Order
		err := db.Order("id").Find(&got).Error
		var out [][]any
		for _, o := range got {
			out = append(out, []any{o.ID, o.CustomerID, o.Product, o.Quantity, o.Note})
		}
		return out, err
	})
	step("get_by_email", func() ([][]any, error) {
		c, err := byEmail("bob@example.com")
		return [][]any{row(c)}, err
	})
	step("in_list", func() ([][]any, error) {
		return find(db.Where("email IN ?", []string{"alice@example.com", "carol@example.com", "nobody@example.com"}).Order("id"))
	})
	step("update", func() ([][]any, error) {
		a, err := byEmail("alice@example.com")
		if err != nil {
			return nil, err
		}
		a.FullName, a.Phone = "Alice Liddell-Smith", ptr("+44 20 7946 0999")
		if err := db.Save(&a).Error; err != nil {
			return nil, err
		}
		a, err = byEmail("alice@example.com")
		return [][]any{row(a)}, err
	})
	step("bulk_update", func() ([][]any, error) {
		r := db.Model(&Customer{}).Where("tier = ?", "gold").Update("credit_limit", "2500.00")
		if r.Error != nil {
			return nil, r.Error
		}
		got, err := find(db.Where("tier = ?", "gold").Order("id"))
		return append([][]any{{r.RowsAffected}}, got...), err
	})
	step("get_or_create", func() ([][]any, error) {
		var c Customer
		err := db.Where(Customer{Email: "bob@example.com"}).Attrs(Customer{FullName: "not used", Tier: "basic"}).FirstOrCreate(&c).Error
		return [][]any{row(c)}, err
	})
	step("get_or_create_new", func() ([][]any, error) {
		var c Customer
		if err := db.Where(Customer{Email: "erin@example.com"}).Attrs(erin).FirstOrCreate(&c).Error; err != nil {
			return nil, err
		}
		c, err := byEmail("erin@example.com")
		return [][]any{row(c)}, err
	})
	step("count", func() ([][]any, error) {
		var all, gold int64
		if err := db.Model(&Customer{}).Count(&all).Error; err != nil {
			return nil, err
		}
		err := db.Model(&Customer{}).Where("tier = ?", "gold").Count(&gold).Error
		return [][]any{{all}, {gold}}, err
	})
	step("pagination", func() ([][]any, error) { return find(db.Order("id").Limit(2).Offset(1)) })
	step("is_null", func() ([][]any, error) { return find(db.Where("phone IS NULL").Order("id")) })
	step("eager_join", func() ([][]any, error) {
		var os []Order
		err := db.Joins("Customer").Order("orders.id").Find(&os).Error
		var out [][]any
		for _, o := range os {
			out = append(out, []any{o.ID, o.Product, o.Note, o.Customer.Email, o.Customer.FullName})
		}
		return out, err
	})
	// Preload: a second query, SELECT * FROM customers WHERE id IN (…).
	step("eager_preload", func() ([][]any, error) {
		var os []Order
		err := db.Preload("Customer").Order("id").Find(&os).Error
		var out [][]any
		for _, o := range os {
			out = append(out, []any{o.ID, o.Product, o.Note, o.Customer.Email, o.Customer.FullName})
		}
		return out, err
	})
	step("related_filter", func() ([][]any, error) {
		return find(db.Joins("JOIN orders ON orders.customer_id = customers.id").Where("orders.product = ?", "widget").Order("customers.id"))
	})
	step("exists", func() ([][]any, error) {
		a, err := has("carol@example.com")
		if err != nil {
			return nil, err
		}
		b, err := has("zed@example.com")
		return [][]any{{a}, {b}}, err
	})
	step("unique_violation", func() ([][]any, error) {
		c := Customer{Email: "bob@example.com", FullName: "Bob Again", Tier: "basic"}
		err := db.Create(&c).Error
		return [][]any{row(c)}, err
	})
	step("raw_sql", func() ([][]any, error) {
		type found struct {
			ID          int
			Email       string
			FullName    string
			BirthDate   *time.Time
			CreditLimit *string
		}
		var fs []found
		if err := db.Raw("SELECT id, email, full_name, birth_date, credit_limit FROM customers WHERE email = ?", "bob@example.com").Scan(&fs).Error; err != nil {
			return nil, err
		}
		var out [][]any
		for _, f := range fs {
			out = append(out, []any{f.ID, f.Email, f.FullName, f.BirthDate, f.CreditLimit})
		}
		rs, err := db.Raw("SELECT full_name, phone FROM customers WHERE email IN ? ORDER BY id", []string{"alice@example.com", "carol@example.com"}).Rows()
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		for rs.Next() {
			var name string
			var phone *string
			if err := rs.Scan(&name, &phone); err != nil {
				return nil, err
			}
			out = append(out, []any{name, phone})
		}
		return out, rs.Err()
	})
	step("rollback", func() ([][]any, error) {
		err := db.Transaction(func(tx *gorm.DB) error {
			c := frank
			if err := tx.Create(&c).Error; err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			return nil, err
		}
		var n int64
		if err := db.Model(&Customer{}).Count(&n).Error; err != nil {
			return nil, err
		}
		ok, err := has("frank@example.com")
		return [][]any{{ok}, {n}}, err
	})
	step("savepoint", func() ([][]any, error) {
		err := db.Transaction(func(tx *gorm.DB) error {
			g := gina
			if err := tx.Create(&g).Error; err != nil {
				return err
			}
			err := tx.Transaction(func(tx2 *gorm.DB) error { // SAVEPOINT
				h := hank
				if err := tx2.Create(&h).Error; err != nil {
					return err
				}
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				return err
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		g, err := has("gina@example.com")
		if err != nil {
			return nil, err
		}
		h, err := has("hank@example.com")
		return [][]any{{g}, {h}}, err
	})
	step("optimistic_lock", func() ([][]any, error) {
		return nil, skip("GORM has no optimistic locking in its core (gorm.io/plugin/optimisticlock is not served by the module proxy here)")
	})
	step("delete", func() ([][]any, error) {
		r := db.Where("email = ?", "dave@example.com").Delete(&Customer{})
		if r.Error != nil {
			return nil, r.Error
		}
		ok, err := has("dave@example.com")
		return [][]any{{r.RowsAffected}, {ok}}, err
	})
	step("order_by_randomized", func() ([][]any, error) { return find(db.Order("full_name")) })
	step("like_randomized", func() ([][]any, error) { return find(db.Where("full_name LIKE ?", "A%").Order("id")) })
	step("full_dump", func() ([][]any, error) {
		var cs []Customer
		if err := db.Order("id").Find(&cs).Error; err != nil {
			return nil, err
		}
		var out [][]any
		for _, c := range cs {
			out = append(out, append([]any{"customer"}, row(c)...))
		}
		var os []Order
		err := db.Order("id").Find(&os).Error
		for _, o := range os {
			out = append(out, []any{"order", o.ID, o.CustomerID, o.Product, o.Quantity, o.Note})
		}
		return out, err
	})
	step("migrate", func() ([][]any, error) {
		var model any = &nicknamePlain{}
		if os.Getenv("ORM_PROTECTED") == "1" {
			model = &nicknameCloak{}
		}
		return [][]any{{"migrated"}}, db.Migrator().AddColumn(model, "Nickname")
	})
}

func migratedPhase() {
	step("migrated_write", func() ([][]any, error) {
		var a CustomerNick
		if err := db.Where("email = ?", "alice@example.com").First(&a).Error; err != nil {
			return nil, err
		}
		if err := db.Model(&a).Update("nickname", "Ally").Error; err != nil {
			return nil, err
		}
		ivy := CustomerNick{Email: "ivy@example.com", FullName: "Ivy Migrated", Nickname: ptr("Ivy 🌿")}
		err := db.Create(&ivy).Error
		return [][]any{{a.ID}, {ivy.ID}}, err
	})
	step("migrated_read", func() ([][]any, error) {
		var cs []CustomerNick
		if err := db.Order("id").Find(&cs).Error; err != nil {
			return nil, err
		}
		var out [][]any
		for _, c := range cs {
			out = append(out, []any{c.ID, c.Email, c.Nickname})
		}
		cs = nil
		err := db.Where("nickname IS NOT NULL").Order("id").Find(&cs).Error
		for _, c := range cs {
			out = append(out, []any{c.ID})
		}
		return out, err
	})
}

func main() {
	dsn := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable",
		os.Getenv("ORM_DB_HOST"), os.Getenv("ORM_DB_PORT"), os.Getenv("ORM_DB_USER"), os.Getenv("ORM_DB_NAME"))
	var err error
	// ORM_SQL_LOG=1 (PGCLOAK_ORM_SQL=1 in the test): every statement on stderr.
	lg := logger.Default.LogMode(logger.Silent)
	if os.Getenv("ORM_SQL_LOG") == "1" {
		lg = logger.New(log.New(os.Stderr, "", 0), logger.Config{LogLevel: logger.Info})
	}
	db, err = gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: lg})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	version := "GORM"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "gorm.io/gorm" || d.Path == "gorm.io/driver/postgres" {
				version += " " + strings.TrimPrefix(d.Path, "gorm.io/") + "@" + d.Version
			}
		}
	}
	emit(line{Step: "version", Rows: [][]*string{{&version}}})
	if os.Getenv("ORM_PHASE") == "migrated" {
		migratedPhase()
	} else {
		mainPhase()
	}
}
