\set id random(1, 10000)
SELECT id FROM det_plain WHERE phone = :id;
