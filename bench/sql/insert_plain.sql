\set n random(1, 1000000)
INSERT INTO ins_plain (full_name, email, phone) VALUES (:n, :n, :n);
