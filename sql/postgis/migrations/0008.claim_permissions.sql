-- The claim queue's permissions (the service checks them; 0006 seeded only claim.read/act):
-- claim.write claims, declines and transfers; claim.manage enqueues boundary rows and runs
-- auto-claim; pooled_record.write ingests records gathered from departments (归集).
INSERT INTO permission (name, description) VALUES
    ('claim.write', '认领、退回、移交'),
    ('claim.manage', '边界入队、自动认领'),
    ('pooled_record.write', '归集数据导入')
ON CONFLICT DO NOTHING;

INSERT INTO role_permission (role_id, permission)
SELECT r.id, p FROM role r, LATERAL unnest(CASE r.name
    WHEN 'admin' THEN ARRAY['claim.write', 'claim.manage', 'pooled_record.write']
    WHEN 'county_commander' THEN ARRAY['claim.write', 'claim.manage']
    WHEN 'township_commander' THEN ARRAY['claim.write', 'claim.manage', 'pooled_record.write']
    WHEN 'grid_leader' THEN ARRAY['claim.write']
    WHEN 'grid_worker' THEN ARRAY['claim.write']
    WHEN 'analyst' THEN ARRAY['pooled_record.write']
    ELSE ARRAY[]::text[] END) AS p
ON CONFLICT DO NOTHING;
