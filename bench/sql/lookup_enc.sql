\set id random(1, 10000)
SELECT id FROM det_enc WHERE phone = :id;
