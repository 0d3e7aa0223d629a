"""Writes examples/rules/web-attacks.log (run from the repository root): one attacker per web rule,
and traffic that must stay quiet (an office NAT, a shopper, a search engine)."""

import random
from datetime import UTC, datetime, timedelta

rng = random.Random(20)
T0 = datetime(2025, 11, 3, 10, 0, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
lines = []


def req(ip, s, method, target, status, agent=CHROME, referrer="-", size=None):
    at = T0 + timedelta(seconds=s)
    stamp = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
    size = size if size is not None else rng.randint(200, 40000)
    lines.append(
        (
            at,
            f'{ip} - - [{stamp}] "{method} {target} HTTP/1.1" {status} {size} '
            f'"{referrer}" "{agent}"',
        )
    )


def agents(n):
    out = []
    for i in range(n):
        major = 100 + i
        os_ = [
            "Windows NT 10.0; Win64; x64",
            "Macintosh; Intel Mac OS X 10_15_7",
            "X11; Linux x86_64",
        ][i % 3]
        out.append(
            f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{major}.0.0.0 Safari/537.36"
        )
    return out


def page_load(ip, s, path, agent, referrer="-"):
    req(ip, s, "GET", path, 200, agent, referrer)
    for k, asset in enumerate(
        ["/static/app.css", "/static/app.js", "/static/logo.svg", "/favicon.ico"]
    ):
        req(ip, s + 0.2 + k * 0.1, "GET", asset, 200, agent, "https://shop.example" + path)


# sensitive-file-probe (escalates: one backup was served)
for k, (path, status) in enumerate(
    [
        ("/.env", 404),
        ("/.git/config", 404),
        ("/wp-config.php.bak", 404),
        ("/backup.sql", 200),
        ("/.aws/credentials", 404),
    ]
):
    req("198.51.100.10", 30 + k, "GET", path, status, "python-requests/2.31.0")
# admin-probe
for k, path in enumerate(
    [
        "/wp-admin/",
        "/phpmyadmin/",
        "/pma/",
        "/adminer.php",
        "/administrator/",
        "/manager/html",
        "/wp-login.php",
    ]
):
    req("198.51.100.11", 40 + k * 3, "GET", path, 404, CHROME)
# path-traversal
for k, target in enumerate(
    [
        "/download?file=../../../../etc/passwd",
        "/static/..%2f..%2f..%2fetc/passwd",
        "/img?src=....//....//etc/hosts",
    ]
):
    req("198.51.100.12", 60 + k * 5, "GET", target, 400, CHROME)
# sql-injection-probe
for k, target in enumerate(
    [
        "/search?q=1%27%20OR%20%271%27%3D%271",
        "/product?id=1+UNION+SELECT+1,2,3--",
        "/product?id=5%20AND%20SLEEP(5)",
    ]
):
    req("198.51.100.13", 80 + k * 4, "GET", target, 200, CHROME)
# xss-probe
for k, target in enumerate(
    [
        "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/search?q=%22%3E%3Csvg/onload=alert(document.cookie)%3E",
        "/search?q=javascript:alert(1)",
    ]
):
    req("198.51.100.14", 100 + k * 4, "GET", target, 200, CHROME)
# vulnerability-scanner: 40 guessed paths, most 404
for k in range(40):
    req(
        "198.51.100.15",
        120 + k * 2,
        "GET",
        f"/wp-content/plugins/plugin-{k}/readme.txt",
        404 if k % 8 else 200,
        "Mozilla/5.0 zgrab/0.x",
    )
# credential-stuffing: WordPress answers a failed login with 200
for k in range(20):
    req(
        "198.51.100.16",
        200 + k * 6,
        "POST",
        "/wp-login.php",
        200,
        CHROME,
        "https://shop.example/wp-login.php",
    )
# payment-hammering (card testing)
for k in range(10):
    req(
        "198.51.100.17",
        220 + k * 9,
        "POST",
        "/?wc-ajax=checkout",
        200,
        CHROME,
        "https://shop.example/checkout/",
    )
# cart-hammering: 35 add-to-cart POSTs in under a minute
for k in range(35):
    req("198.51.100.18", 300 + k * 1.5, "POST", "/cart/add", 302, CHROME)
# user-agent-rotation: a new browser every request or two
rotating = agents(16)
for k in range(30):
    req("198.51.100.19", 320 + k * 5, "GET", f"/product/item-{k}/", 200, rotating[k % 16])

# Quiet: an office behind one NAT (12 people, each their own browser), shopping normally.
office = agents(12)
for person, agent in enumerate(office):
    s = 10 + person * 20
    for step in range(6):
        page_load(
            "203.0.113.20",
            s + step * 40,
            f"/product/p-{person}-{step}/",
            agent,
            "https://shop.example/",
        )
    req("203.0.113.20", s + 250, "POST", "/cart/add", 302, agent, "https://shop.example/product/")
# Quiet: a shopper who logs in once, buys once, and mistypes the password once.
for step in range(8):
    page_load(
        "192.0.2.44", 15 + step * 30, f"/product/shoe-{step}/", CHROME, "https://www.google.com/"
    )
req("192.0.2.44", 260, "POST", "/wp-login.php", 200, CHROME, "https://shop.example/wp-login.php")
req("192.0.2.44", 275, "POST", "/wp-login.php", 302, CHROME, "https://shop.example/wp-login.php")
req("192.0.2.44", 300, "POST", "/cart/add", 302, CHROME, "https://shop.example/product/shoe-3/")
req("192.0.2.44", 340, "POST", "/?wc-ajax=checkout", 200, CHROME, "https://shop.example/checkout/")
req(
    "192.0.2.44",
    345,
    "GET",
    "/checkout/order-received/1001/",
    200,
    CHROME,
    "https://shop.example/checkout/",
)
# exploit-attempt: phpunit's eval-stdin.php and a CGI shell
req(
    "198.51.100.22",
    400,
    "POST",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    404,
    "Mozilla/5.0",
)
req("198.51.100.22", 401, "POST", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", 400, "Mozilla/5.0")
# open-proxy-probe: CONNECT and an absolute URL as the target
req("198.51.100.23", 410, "CONNECT", "example.com:443", 400, "Mozilla/5.0")
req("198.51.100.23", 412, "GET", "http://example.com/", 400, "Mozilla/5.0")

# spoofed-crawler: says it is Googlebot, from an address that is not Google's
for k in range(30):
    req(
        "198.51.100.21",
        30 + k * 15,
        "GET",
        f"/product/item-{k}/",
        200,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    )

# Quiet: a search engine reading the catalogue from Google's own range (labelled, not alerted)
for k in range(25):
    req(
        "66.249.66.1",
        20 + k * 12,
        "GET",
        f"/product/item-{k}/",
        200,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    )

lines.sort(key=lambda x: x[0])
with open("examples/rules/web-attacks.log", "w") as out:
    out.write("\n".join(text for _, text in lines) + "\n")
print(len(lines))
