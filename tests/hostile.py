"""Hostile and broken documents, shared by the unit and the pipeline tests:
name -> (document text or bytes, the stage it must fail at or None for success, the row's app_id)."""

GOOD_BODY = (
    '<Request ID="{id}"><CustData><application app_receive_date="2025-01-02" campaign_num="{camp}">'
    '<contact con_id="{con}" ac_role_tp_c="PR" first_name="{first}"/></application></CustData>'
    "<Reports>{noise}</Reports></Request>"
)


def good(
    app_id: int, camp: str = "Z4K", first: str = "JANE", noise: str = "", prefix: str = ""
) -> str:
    return (
        prefix
        + "<Provenir>"
        + GOOD_BODY.format(id=app_id, camp=camp, con=app_id * 10 + 1, first=first, noise=noise)
        + "</Provenir>"
    )


def cases(base: int) -> dict:
    """Documents for app_ids base+0 .. base+N; each tagged with the stage it must fail at."""
    xxe_file = (
        '<?xml version="1.0"?><!DOCTYPE Provenir [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + good(base + 0, first="&e;")
    )
    xxe_net = '<!DOCTYPE Provenir [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]>' + good(
        base + 1, first="&e;"
    )
    laughs = (
        '<!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + "]>"
        + good(base + 2, first="&lol9;")
    )
    dtd_after_comment = '<!-- hi --><!DOCTYPE Provenir SYSTEM "http://127.0.0.1:9/p.dtd">' + good(
        base + 3
    )
    deep = "<a>" * 10000 + "</a>" * 10000
    entity = '<!DOCTYPE Provenir [<!ENTITY x "INJECTED">]>'
    big_entity = '<!DOCTYPE Provenir [<!ENTITY x "' + "INJECTED" * 125 + '">]>'  # 1,000 characters
    table = {
        "xxe_file": (xxe_file, "parse"),
        "xxe_network": (xxe_net, "parse"),
        "billion_laughs": (laughs, "parse"),
        "dtd_after_comment": (dtd_after_comment, "parse"),
        "undeclared_entity": (good(base + 4, first="&e;"), "parse"),
        "malformed": (
            good(base + 5).replace('campaign_num="Z4K"', 'campaign_num="Z4K" <<'),
            "parse",
        ),
        "truncated": (good(base + 6, noise="<r/>" * 100)[:-60], "parse"),
        "empty": ("", "read"),
        "whitespace": ("   \n\t  ", "read"),
        "nul_byte": (good(base + 9).replace("JANE", "JA\x00NE"), "parse"),
        "wrong_root": (
            good(base + 10).replace("Provenir>", "Other>").replace("<Provenir", "<Other"),
            "validate",
        ),
        "rec_lending": (
            good(base + 11)
            .replace("<application", "<IL_application")
            .replace("</application", "</IL_application"),
            "validate",
        ),
        "id_mismatch": (good(base + 12 + 1000), "validate"),
        "cp1252_bytes": (good(base + 13, first="JOS\u00c9 M\u00dcLLER").encode("cp1252"), None),
        "bom": (good(base + 14, prefix="\ufeff"), None),
        "twenty_mb": (
            good(
                base + 15,
                noise='<Report d="' + "x" * 1000 + '"/>' * 1 + "<Item v='abcdefgh'/>" * 1_000_000,
            ),
            None,
        ),
        "deep_nesting_in_scope": (
            good(base + 16).replace("</application>", deep + "</application>"),
            "parse",
        ),
        "deep_nesting_in_noise": (good(base + 17, noise=deep), None),
        "five_mb_attribute": (good(base + 18, camp="9" * 5_000_000), None),
        # issue 11: the DOCTYPE refusal was bypassed by extra byte-order marks, entities expanded
        "two_text_boms_internal_entity": (
            "\ufeff\ufeff" + entity + good(base + 19, first="&x;"),
            "parse",
        ),
        "three_byte_boms_internal_entity": (
            b"\xef\xbb\xbf" * 3 + (entity + good(base + 20, first="&x;")).encode(),
            "parse",
        ),
        "boms_whitespace_comment_pi_entity": (
            "\ufeff \n<!-- c -->\ufeff<?note x?>\t" + entity + good(base + 21, first="&x;"),
            "parse",
        ),
        "entity_amplification_after_boms": (
            "\ufeff\ufeff" + big_entity + good(base + 22, first="&x;&x;&x;&x;"),
            "parse",
        ),
        "doctype_after_xml_declaration_and_bom": (
            '\ufeff<?xml version="1.0" encoding="UTF-8"?>\ufeff'
            + entity
            + good(base + 23, first="&x;"),
            "parse",
        ),
        "three_byte_boms_no_doctype": (b"\xef\xbb\xbf" * 3 + good(base + 24).encode(), None),
    }
    order = [
        "xxe_file",
        "xxe_network",
        "billion_laughs",
        "dtd_after_comment",
        "undeclared_entity",
        "malformed",
        "truncated",
        "empty",
        "whitespace",
        "nul_byte",
        "wrong_root",
        "rec_lending",
        "id_mismatch",
        "cp1252_bytes",
        "bom",
        "twenty_mb",
        "deep_nesting_in_scope",
        "deep_nesting_in_noise",
        "five_mb_attribute",
        "two_text_boms_internal_entity",
        "three_byte_boms_internal_entity",
        "boms_whitespace_comment_pi_entity",
        "entity_amplification_after_boms",
        "doctype_after_xml_declaration_and_bom",
        "three_byte_boms_no_doctype",
    ]
    return {name: (table[name][0], table[name][1], base + i) for i, name in enumerate(order)}
