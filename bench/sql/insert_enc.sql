\set n random(1, 1000000)
INSERT INTO ins_enc (full_name, email, phone) VALUES (:n, :n, :n);
