-- sre.rollout's reload-free nginx balancer (nginx + lua-nginx-module + lua-resty-core).
--
-- Members, weights, states and in-flight counts of each pool live in one lua_shared_dict,
-- so every worker sees a change at once and no reload is ever needed:
--
--   p:<pool>            the member names, one per line, in seed order
--   a:<pool>:<name>     address host:port
--   w:<pool>:<name>     weight (a whole number; 0 takes the member out of rotation)
--   s:<pool>:<name>     state: ready (takes requests), drain (no new requests), maint (out)
--   i:<pool>:<name>     requests in flight: +1 when the balancer picks the member, -1 in the log phase
--
-- nginx configuration (see sre.rollout.lb_member, "nginx lua mode"):
--
--   lua_shared_dict sre_rollout 1m;
--   lua_package_path "/path/to/this/dir/?.lua;;";
--   init_by_lua_block { require("rollout_balancer").seed("app", "/etc/nginx/members_app.txt") }
--   upstream app {
--       server 0.0.0.1;   # never used: the balancer sets the peer
--       balancer_by_lua_block { require("rollout_balancer").balance("app") }
--   }
--   location / {
--       proxy_pass http://app;
--       proxy_next_upstream off;   # a failed request is an error, not a hidden retry
--       log_by_lua_block { require("rollout_balancer").done() }
--   }
--   server {                       # the admin API, on loopback only
--       listen 127.0.0.1:8081;
--       allow 127.0.0.1; deny all;
--       location /sre-rollout/ { content_by_lua_block { require("rollout_balancer").admin() } }
--   }
--
-- Seed file: one member a line, "name host:port [weight=N] [down]"; "#" starts a comment.
-- Seeding adds members that the dict does not hold yet; members already there keep their runtime
-- state and weight across reloads (nginx keeps shared dicts over a reload, not over a restart).
--
-- Admin API (plain text, one member a line "name address state weight in_flight"):
--   GET  /sre-rollout/<pool>                          every member
--   POST /sre-rollout/<pool>/<name>?state=S&weight=N  change one member (either or both), answers its line

local balancer = require("ngx.balancer")

local M = {}
local DICT = "sre_rollout"
local STATES = { ready = true, drain = true, maint = true }

local function dict()
    local d = ngx.shared[DICT]
    if not d then
        error("lua_shared_dict " .. DICT .. " is not defined in the nginx configuration")
    end
    return d
end

local function key(kind, pool, name)
    return kind .. ":" .. pool .. ":" .. name
end

local function names(d, pool)
    local out = {}
    local list = d:get("p:" .. pool)
    if list then
        for name in list:gmatch("[^\n]+") do
            out[#out + 1] = name
        end
    end
    return out
end

function M.seed(pool, path)
    local d = dict()
    local file, err = io.open(path, "r")
    if not file then
        error("sre.rollout balancer: cannot read the member file " .. path .. ": " .. tostring(err))
    end
    local order = {}
    for line in file:lines() do
        line = line:gsub("#.*", "")
        local words = {}
        for word in line:gmatch("%S+") do
            words[#words + 1] = word
        end
        if #words > 0 then
            local name, address = words[1], words[2]
            if not address or not address:match("^.+:%d+$") then
                error("sre.rollout balancer: " .. path .. ": a line is 'name host:port [weight=N] [down]', got: "
                      .. line)
            end
            local weight, state = 1, "ready"
            for i = 3, #words do
                local w = words[i]:match("^weight=(%d+)$")
                if w then
                    weight = tonumber(w)
                elseif words[i] == "down" then
                    state = "maint"
                else
                    error("sre.rollout balancer: " .. path .. ": unknown parameter " .. words[i])
                end
            end
            order[#order + 1] = name
            -- add() keeps what is there: a reload must not undo a drain
            d:add(key("a", pool, name), address)
            d:add(key("w", pool, name), weight)
            d:add(key("s", pool, name), state)
            d:add(key("i", pool, name), 0)
            d:set(key("a", pool, name), address)
        end
    end
    file:close()
    d:set("p:" .. pool, table.concat(order, "\n"))
end

-- Least requests in flight relative to weight; ties go round-robin.
local function pick(d, pool, skip)
    local list = names(d, pool)
    local n = #list
    if n == 0 then
        return nil
    end
    local start = (d:incr("rr:" .. pool, 1, 0) or 0) % n
    local best, best_load
    for i = 0, n - 1 do
        local name = list[(start + i) % n + 1]
        if name ~= skip and d:get(key("s", pool, name)) == "ready" then
            local weight = d:get(key("w", pool, name)) or 0
            if weight > 0 then
                local load = ((d:get(key("i", pool, name)) or 0) + 1) / weight
                if not best_load or load < best_load then
                    best, best_load = name, load
                end
            end
        end
    end
    return best
end

function M.balance(pool)
    local d = dict()
    local ctx = ngx.ctx
    if ctx.sre_rollout_inflight then
        -- nginx tries another peer (proxy_next_upstream is not off): the first try is over
        d:incr(ctx.sre_rollout_inflight, -1, 0)
        ctx.sre_rollout_inflight = nil
    end
    local skip
    for _ = 1, 3 do
        local name = pick(d, pool, skip)
        if not name then
            ngx.log(ngx.ERR, "sre.rollout balancer: pool ", pool, " has no ready member")
            return ngx.exit(503)
        end
        -- Count first, then look at the state again: a drain that starts after this increment sees
        -- the request in flight; one that started before it is seen here and the member is skipped.
        local inflight = key("i", pool, name)
        d:incr(inflight, 1, 0)
        if d:get(key("s", pool, name)) == "ready" then
            ctx.sre_rollout_inflight = inflight
            local host, port = (d:get(key("a", pool, name)) or ""):match("^(.+):(%d+)$")
            local ok, err = balancer.set_current_peer(host, tonumber(port))
            if not ok then
                d:incr(inflight, -1, 0)
                ctx.sre_rollout_inflight = nil
                ngx.log(ngx.ERR, "sre.rollout balancer: cannot use ", name, ": ", err)
                return ngx.exit(500)
            end
            return
        end
        d:incr(inflight, -1, 0)
        skip = name
    end
    ngx.log(ngx.ERR, "sre.rollout balancer: pool ", pool, " changed under three picks in a row")
    return ngx.exit(503)
end

function M.done()
    local inflight = ngx.ctx.sre_rollout_inflight
    if inflight then
        ngx.shared[DICT]:incr(inflight, -1, 0)
        ngx.ctx.sre_rollout_inflight = nil
    end
end

local function line(d, pool, name)
    return table.concat({ name, d:get(key("a", pool, name)) or "-", d:get(key("s", pool, name)) or "-",
                          tostring(d:get(key("w", pool, name)) or 0),
                          tostring(d:get(key("i", pool, name)) or 0) }, " ") .. "\n"
end

local function answer(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(body)
    return ngx.exit(status)
end

function M.admin()
    local d = dict()
    local pool, name = ngx.var.uri:match("^/sre%-rollout/([^/]+)/?([^/]*)$")
    if not pool then
        return answer(404, "use /sre-rollout/<pool> or /sre-rollout/<pool>/<member>\n")
    end
    local list = names(d, pool)
    if #list == 0 then
        return answer(404, "no pool " .. pool .. "\n")
    end
    local method = ngx.req.get_method()
    if name == "" then
        if method ~= "GET" then
            return answer(405, "GET a pool, POST a member\n")
        end
        local out = {}
        for _, member in ipairs(list) do
            out[#out + 1] = line(d, pool, member)
        end
        return answer(200, table.concat(out))
    end
    if not d:get(key("a", pool, name)) then
        return answer(404, "pool " .. pool .. " has no member " .. name .. "\n")
    end
    if method == "POST" then
        local args = ngx.req.get_uri_args()
        local state, weight = args.state, args.weight
        if state and not STATES[state] then
            return answer(400, "state must be ready, drain or maint\n")
        end
        if weight and not tostring(weight):match("^%d+$") then
            return answer(400, "weight must be a whole number\n")
        end
        if weight then
            d:set(key("w", pool, name), tonumber(weight))
        end
        if state then
            d:set(key("s", pool, name), state)
        end
    elseif method ~= "GET" then
        return answer(405, "GET or POST a member\n")
    end
    return answer(200, line(d, pool, name))
end

return M
